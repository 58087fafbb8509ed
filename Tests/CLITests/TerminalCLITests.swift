import XCTest
import Foundation

/// The progress bar on a real terminal: forge runs inside tmux panes 60, 80 and 160 columns wide, and
/// what the pane shows afterwards is checked: the bar no wider than the pane (a wider one would wrap,
/// and its `\r` would then stack a new row per step), and redrawn in place rather than printed once
/// per step.
final class TerminalCLITests: CLITestCase {
    /// Runs tmux with `arguments` on a private server socket; returns (status, stdout). Through bash,
    /// which first closes every descriptor above 2: the server that new-session forks would inherit
    /// them, and Foundation's Process waits until the last holder of its child's pipes has exited.
    private func tmux(_ socket: String, _ arguments: [String], readOutput: Bool = false) throws -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = ["-c", #"for f in /proc/$$/fd/*; do n=${f##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-"; done; exec /usr/bin/tmux "$@""#,
                             "tmux", "-L", socket] + arguments
        let out = Pipe()
        process.standardOutput = readOutput ? out : FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = readOutput ? out.fileHandleForReading.readDataToEndOfFile() : Data()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    func testTheProgressBarFitsTmuxPanesOf60_80And160Columns() throws {
        let forge = try self.forge
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/tmux") else {
            throw XCTSkip("tmux is not installed (make test-deps installs it)")
        }
        let dir = folder()
        let data = dir + "/input.txt"
        try String(repeating: "First Citizen: Before we proceed any further, hear me speak.\n", count: 80)
            .write(toFile: data, atomically: true, encoding: .utf8)
        for width in [60, 80, 160] {
            let socket = "forge-test-\(UUID().uuidString.prefix(8))"
            defer { _ = try? tmux(socket, ["kill-server"]) }
            let done = dir + "/done-\(width)"
            // 41 steps: the case that printed 42 lines at 80 columns
            let command = "'\(forge)' train char --data '\(data)' --layers 1 --heads 2 --embd 16 --block 16 --batch 4 --steps 41 "
                + "--warmup 1 --eval-every 0 --log-every 1 --no-tensorboard --out '\(dir)/run-\(width)'; "
                + "echo exit=$? > '\(done)'; sleep 60"
            let (status, _) = try tmux(socket, ["new-session", "-d", "-s", "forge", "-x", "\(width)", "-y", "60", command])
            XCTAssertEqual(status, 0, "tmux new-session failed at \(width) columns")
            let deadline = Date().addingTimeInterval(180)
            while !FileManager.default.fileExists(atPath: done) && Date() < deadline { Thread.sleep(forTimeInterval: 0.2) }
            Thread.sleep(forTimeInterval: 0.3)  // let tmux draw the last output
            let exit = (try? String(contentsOfFile: done, encoding: .utf8)) ?? "(not finished in 180 s)"
            XCTAssertEqual(exit.trimmingCharacters(in: .whitespacesAndNewlines), "exit=0", "forge at \(width) columns")
            // -J joins rows that wrapped, so a line wider than the pane shows as one long line here
            let (captured, screen) = try tmux(socket, ["capture-pane", "-p", "-J", "-t", "forge"], readOutput: true)
            XCTAssertEqual(captured, 0, "tmux capture-pane failed at \(width) columns")
            let lines = screen.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            // Status lines may wrap like any text; the bar must not (its `\r` would then stack rows).
            let barLines = lines.filter { $0.contains("/41") }
            XCTAssertGreaterThanOrEqual(barLines.count, 1, "no progress bar on the screen:\n\(screen)")
            XCTAssertLessThanOrEqual(barLines.count, 2, "the bar printed a line per step instead of redrawing:\n\(screen)")
            XCTAssertEqual(barLines.filter { $0.count > width }, [], "bar lines wider than \(width) columns:\n\(screen)")
            XCTAssertTrue(screen.contains("finished after"), screen)
        }
    }
}
