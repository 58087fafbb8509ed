import Foundation

/// How a tensor was made: its inputs and a closure mapping the output's gradient to theirs.
final class GradNode {
    let name: String
    let inputs: [Tensor]
    let backward: (Tensor) -> [Tensor?]
    init(name: String, inputs: [Tensor], backward: @escaping (Tensor) -> [Tensor?]) {
        self.name = name
        self.inputs = inputs
        self.backward = backward
    }
}

/// Whether ops record a graph. Off inside `withNoGrad` (sampling, evaluation).
public enum GradMode {
    @TaskLocal public static var isEnabled = true
}

/// Runs `body` without recording any graph (like `torch.no_grad()`).
public func withNoGrad<R>(_ body: () throws -> R) rethrows -> R {
    try GradMode.$isEnabled.withValue(false) { try body() }
}

extension Tensor {
    /// Attaches a backward closure to a freshly computed `result` when any input needs gradients.
    /// The closure receives d(loss)/d(result) and returns d(loss)/d(input) for each input (nil = none).
    /// It must not capture `result` itself (that would be a cycle); capture `result.storage` instead.
    @inline(__always)
    static func record(_ result: Tensor, _ name: String, _ inputs: [Tensor], _ backward: @escaping (Tensor) -> [Tensor?]) -> Tensor {
        if GradMode.isEnabled, inputs.contains(where: { $0.requiresGrad }) {
            result.requiresGrad = true
            result.gradNode = GradNode(name: name, inputs: inputs, backward: backward)
        }
        return result
    }

    /// Whether this op call must build a graph node (checked before doing backward-only work).
    @inline(__always)
    static func needsGrad(_ inputs: Tensor...) -> Bool {
        GradMode.isEnabled && inputs.contains(where: { $0.requiresGrad })
    }

    /// Back-propagates from this tensor (a scalar unless `gradient` is given), accumulating into the
    /// `grad` of every leaf that requires gradients. The graph is freed afterwards, like PyTorch.
    public func backward(_ gradient: Tensor? = nil) {
        let seed: Tensor
        if let g = gradient {
            forgePrecondition(g.shape == shape, "backward: gradient shape \(g.shape) differs from tensor shape \(shape)")
            seed = g
        } else {
            forgePrecondition(count == 1, "backward: needs a scalar, got shape \(shape); pass a gradient")
            seed = Tensor(shape: shape, repeating: 1)
        }
        // Topological order by iterative DFS (deep graphs would overflow a recursive one).
        var order: [Tensor] = []
        var visited = Set<ObjectIdentifier>()
        var stack: [(Tensor, Bool)] = [(self, false)]
        while let (t, expanded) = stack.popLast() {
            if expanded { order.append(t); continue }
            if visited.contains(ObjectIdentifier(t)) { continue }
            visited.insert(ObjectIdentifier(t))
            stack.append((t, true))
            if let node = t.gradNode {
                for inp in node.inputs where inp.requiresGrad && !visited.contains(ObjectIdentifier(inp)) {
                    stack.append((inp, false))
                }
            }
        }
        var grads: [ObjectIdentifier: Tensor] = [ObjectIdentifier(self): seed]
        for t in order.reversed() {
            guard let g = grads.removeValue(forKey: ObjectIdentifier(t)) else { continue }
            if let node = t.gradNode {
                let inputGrads = withNoGrad { node.backward(g) }
                for (inp, gi) in zip(node.inputs, inputGrads) {
                    guard inp.requiresGrad, let gi else { continue }
                    forgePrecondition(gi.shape == inp.shape, "backward of \(node.name): gradient shape \(gi.shape) != input shape \(inp.shape)")
                    let key = ObjectIdentifier(inp)
                    if let prev = grads[key] { grads[key] = prev.adding(gi) } else { grads[key] = gi }
                }
                t.gradNode = nil  // free the graph as we go
            } else if t.requiresGrad {
                t.accumulateGrad(g)
            }
        }
    }

    /// Adds `g` into this leaf's `grad` (allocating it on first use).
    public func accumulateGrad(_ g: Tensor) {
        if let existing = grad {
            let n = count
            let dst = SendablePointer(existing.mutablePointer), src = SendablePointer(g.pointer)
            parallelFor(n) { s, e in for i in s..<e { dst.p[i] += src.p[i] } }
        } else {
            grad = g.detachedCopy()
        }
    }

    /// Sum of two same-shape tensors without recording a graph (used for gradient accumulation).
    func adding(_ other: Tensor) -> Tensor {
        let out = Tensor(uninitializedShape: shape)
        let a = SendablePointer(pointer), b = SendablePointer(other.pointer), o = SendablePointer(out.mutablePointer)
        parallelFor(count) { s, e in for i in s..<e { o.p[i] = a.p[i] + b.p[i] } }
        return out
    }
}
