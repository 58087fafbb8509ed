import Foundation

/// How a tensor was made: where each input's gradient goes and a closure mapping the output's
/// gradient to theirs. A node holds no input *tensor* (only the nodes that made them, or the leaves
/// that collect gradients), so an input's memory lives exactly as long as some op's backward closure
/// captured it: an add keeps nothing, a matmul keeps its two operands. Backward drops each closure,
/// and with it the tensors it saved, as soon as it has run.
final class GradNode {
    let name: String
    let edges: [GradEdge]
    /// nil once backward has run it (its saved tensors are released then).
    var backward: ((Tensor) -> [Tensor?])?
    init(name: String, edges: [GradEdge], backward: @escaping (Tensor) -> [Tensor?]) {
        self.name = name
        self.edges = edges
        self.backward = backward
    }
}

/// Where the gradient of one op input goes: to the node that computed it, to a leaf that collects
/// it, or nowhere (an input that needs no gradient).
struct GradEdge {
    let shape: [Int]
    let node: GradNode?
    let leaf: Tensor?

    init(_ input: Tensor) {
        shape = input.shape
        node = input.gradNode
        leaf = input.gradNode == nil && input.requiresGrad ? input : nil
    }

    /// The vertex this edge leads to in backward's graph, if any.
    var vertex: GradVertex? {
        if let node { return .node(node) }
        if let leaf, leaf.requiresGrad { return .leaf(leaf) }
        return nil
    }
}

/// A vertex of the backward graph: an op's node or a leaf tensor.
enum GradVertex {
    case node(GradNode)
    case leaf(Tensor)

    var id: ObjectIdentifier {
        switch self {
        case .node(let n): return ObjectIdentifier(n)
        case .leaf(let t): return ObjectIdentifier(t)
        }
    }
}

/// Whether ops record a graph. Off inside `withNoGrad` (sampling, evaluation).
public enum GradMode {
    /// Whether ops record backward closures now. Task-local, so `withNoGrad` in one task (a sampler)
    /// does not turn off recording in another (a training step); it changes only inside `withNoGrad`.
    @TaskLocal public static var isEnabled = true
}

/// Runs `body` without recording any graph (like `torch.no_grad()`).
public func withNoGrad<R>(_ body: () throws -> R) rethrows -> R {
    try GradMode.$isEnabled.withValue(false) { try body() }
}

extension Tensor {
    /// Attaches a backward closure to a freshly computed `result` when any input needs gradients.
    /// The closure receives d(loss)/d(result) and returns d(loss)/d(input) for each input (nil = none).
    /// It should capture only what the backward needs (the graph itself keeps no input alive), and
    /// must not capture `result` itself (that would be a cycle); capture `result.storage` instead.
    @inline(__always)
    static func record(_ result: Tensor, _ name: String, _ inputs: [Tensor], _ backward: @escaping (Tensor) -> [Tensor?]) -> Tensor {
        if GradMode.isEnabled, inputs.contains(where: { $0.requiresGrad }) {
            result.requiresGrad = true
            result.gradNode = GradNode(name: name, edges: inputs.map(GradEdge.init), backward: backward)
        }
        return result
    }

    /// Whether this op call must build a graph node (checked before doing backward-only work).
    @inline(__always)
    static func needsGrad(_ inputs: Tensor...) -> Bool {
        GradMode.isEnabled && inputs.contains(where: { $0.requiresGrad })
    }

    /// Back-propagates from this tensor (a scalar unless `gradient` is given), accumulating into the
    /// `grad` of every leaf that requires gradients. The graph is freed as it goes, like PyTorch: each
    /// node's saved tensors are released once its backward has run, and each gradient once consumed.
    ///
    /// `leafGradientReady` is called with each leaf right after this backward has added its whole
    /// contribution to the leaf's `grad` (the reverse topological order reaches a leaf only once every
    /// op that used it has run): data-parallel training starts reducing a bucket of gradients there,
    /// while backward goes on with earlier layers (PyTorch DDP's autograd hooks). The hook runs on the
    /// calling thread; the leaf's `grad` is not touched again by this backward.
    public func backward(_ gradient: Tensor? = nil, leafGradientReady: ((Tensor) -> Void)? = nil) {
        let seed: Tensor
        if let g = gradient {
            forgePrecondition(g.shape == shape, "backward: gradient shape \(g.shape) differs from tensor shape \(shape)")
            seed = g
        } else {
            forgePrecondition(count == 1, "backward: needs a scalar, got shape \(shape); pass a gradient")
            seed = Tensor(shape: shape, repeating: 1)
        }
        let root: GradVertex
        if let node = gradNode { root = .node(node) } else if requiresGrad { root = .leaf(self) } else { return }
        // Topological order by iterative DFS (deep graphs would overflow a recursive one).
        var order: [GradVertex] = []
        var visited = Set<ObjectIdentifier>()
        var stack: [(GradVertex, Bool)] = [(root, false)]
        while let (v, expanded) = stack.popLast() {
            if expanded { order.append(v); continue }
            if visited.contains(v.id) { continue }
            visited.insert(v.id)
            stack.append((v, true))
            if case .node(let node) = v {
                for e in node.edges {
                    if let w = e.vertex, !visited.contains(w.id) { stack.append((w, false)) }
                }
            }
        }
        var grads: [ObjectIdentifier: Tensor] = [root.id: seed]
        for v in order.reversed() {
            guard let g = grads.removeValue(forKey: v.id) else { continue }
            switch v {
            case .leaf(let t):
                t.accumulateGrad(g)
                leafGradientReady?(t)
            case .node(let node):
                guard let run = node.backward else { continue }  // already back-propagated through
                node.backward = nil  // releases what the closure saved once it returns
                let inputGrads = withNoGrad { run(g) }
                for (e, gi) in zip(node.edges, inputGrads) {
                    guard let w = e.vertex, let gi else { continue }
                    forgePrecondition(gi.shape == e.shape, "backward of \(node.name): gradient shape \(gi.shape) != input shape \(e.shape)")
                    if let prev = grads[w.id] { grads[w.id] = prev.adding(gi) } else { grads[w.id] = gi }
                }
            }
        }
        gradNode = nil
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
