import XCTest
import Foundation
import Training

/// The terminal progress line never exceeds the terminal's width, so `\r` redraws one line.
final class ProgressBarTests: XCTestCase {
    /// Every line the terminal shows: the text between `\r` and `\n` separators.
    private func screenLines(_ out: String) -> [Substring] {
        out.split(whereSeparator: { $0 == "\r" || $0 == "\n" })
    }

    private let scalars: [(String, Double)] = [("loss", 4.1234), ("lr", 0.001), ("grad_norm", 1.25)]

    func testLinesFitTheTerminalAt60_80And160Columns() {
        var fullLine = ""
        for columns in [60, 80, 160] {
            var out = ""
            let bar = ProgressBar(unit: "tokens", isTerminal: true, output: { out += $0 }, columns: { columns })
            for step in 1...41 {
                bar.update(label: "epoch 1/1", position: step, total: 200, rate: 12345.6, eta: 61, scalars: scalars)
            }
            bar.finishLine(label: "epoch 1/1", position: 200, total: 200, rate: 12345.6, eta: 0, scalars: scalars)
            let lines = screenLines(out)
            XCTAssertFalse(lines.isEmpty)
            for line in lines { XCTAssertLessThanOrEqual(line.count, columns - 1, "at \(columns) columns: \"\(line)\"") }
            XCTAssertEqual(out.filter { $0 == "\n" }.count, 1, "one line kept per stage at \(columns) columns")
            let last = String(lines.last!)
            XCTAssertTrue(last.hasPrefix("epoch 1/1 [####################] 200/200"), last)
            switch columns {
            case 60:   // the scalars went first, from the right
                XCTAssertFalse(last.contains("loss"), last)
                XCTAssertTrue(last.contains("tokens/s"), last)
            case 80:
                XCTAssertTrue(last.contains("loss 4.1234"), last)
                XCTAssertFalse(last.contains("grad_norm"), last)
            default:
                XCTAssertTrue(last.hasSuffix("loss 4.1234 lr 0.0010 grad_norm 1.2500"), last)
                fullLine = last
            }
        }
        XCTAssertGreaterThan(fullLine.count, 80, "the test line must be wider than 80 columns to test anything")
    }

    func testAMessageAtTheLastStepDoesNotRepeatTheFinishedLine() {
        var out = ""
        let bar = ProgressBar(unit: "tokens", isTerminal: true, output: { out += $0 }, columns: { 80 })
        bar.update(label: "step", position: 200, total: 200, rate: 10, eta: 0, scalars: [("loss", 3)])
        bar.message("step 200: val_loss 2.9")
        bar.finishLine(label: "step", position: 200, total: 200, rate: 10, eta: 0, scalars: [("loss", 3)])
        XCTAssertEqual(out, "\rstep [####################] 200/200 10.0 tokens/s ETA 0:00 loss 3.0000\nstep 200: val_loss 2.9\n")
        // A different final state is still drawn as its own line.
        bar.update(label: "step", position: 10, total: 20, rate: 10, eta: 1, scalars: [])
        bar.message("note")
        bar.finishLine(label: "step", position: 20, total: 20, rate: 10, eta: 0, scalars: [])
        XCTAssertTrue(out.hasSuffix("note\n\rstep [####################] 20/20 10.0 tokens/s ETA 0:00\n"), out)
    }

    func testAVeryNarrowTerminalCutsEvenTheLabel() {
        let bar = ProgressBar(unit: "samples", isTerminal: true, output: { _ in }, columns: { 10 })
        let text = bar.line(label: "epoch 12/100", position: 3, total: 9, rate: 1, eta: 1, scalars: [], bar: true, maxWidth: 9)
        XCTAssertEqual(text, "epoch 12/")
    }

    func testPlainLinesInALogAreNeverCut() {
        var out: [String] = []
        let bar = ProgressBar(unit: "tokens", isTerminal: false, plainEvery: 1, output: { out.append($0) }, columns: { 40 })
        bar.update(label: "epoch 1/1", position: 1, total: 200, rate: 10, eta: 5, scalars: scalars)
        XCTAssertEqual(out, ["epoch 1/1 1/200 10.0 tokens/s ETA 0:05 loss 4.1234 lr 0.0010 grad_norm 1.2500\n"])
    }

    func testTerminalWidthFallsBackToCOLUMNSThenTo80() throws {
        try XCTSkipIf(isatty(1) != 0, "stdout is a terminal here: its TIOCGWINSZ width wins over COLUMNS")
        XCTAssertEqual(ProgressBar.terminalColumns(environment: ["COLUMNS": "132"]), 132)
        XCTAssertEqual(ProgressBar.terminalColumns(environment: ["COLUMNS": "wide"]), 80)
        XCTAssertEqual(ProgressBar.terminalColumns(environment: [:]), 80)
    }
}
