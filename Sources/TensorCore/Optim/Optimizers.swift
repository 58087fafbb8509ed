import Foundation
import CKernels

// torch.optim's update rules, step for step, so a run resumed from a PyTorch-shaped checkpoint (or
// compared against PyTorch) follows the same trajectory. Parameters are updated in place.

// MARK: - parameter groups

/// Parameters that share hyper-parameters, like one entry of torch's `param_groups`.
/// nanoGPT puts 2-D weights in a group with weight decay and biases/norm weights in one without.
public struct ParameterGroup {
    /// The tensors this group updates (leaves with `requiresGrad`), in the order their state is numbered.
    public var parameters: [Tensor]
    /// Learning rate of this group; `Optimizer.learningRate` sets every group's at once.
    public var learningRate: Float
    /// Weight decay of this group (L2 for SGD/Adam, decoupled for AdamW).
    public var weightDecay: Float

    /// A group of `parameters` stepped with `learningRate` and `weightDecay`.
    public init(parameters: [Tensor], learningRate: Float, weightDecay: Float) {
        self.parameters = parameters
        self.learningRate = learningRate
        self.weightDecay = weightDecay
    }
}

/// nanoGPT's split: tensors of rank ≥ 2 (matmul and embedding weights) decay, the rest (biases,
/// LayerNorm weights) do not. Returns the two groups in that order.
public func decayGroups(_ parameters: [Tensor], learningRate: Float, weightDecay: Float) -> [ParameterGroup] {
    [ParameterGroup(parameters: parameters.filter { $0.rank >= 2 }, learningRate: learningRate, weightDecay: weightDecay),
     ParameterGroup(parameters: parameters.filter { $0.rank < 2 }, learningRate: learningRate, weightDecay: 0)]
}

// MARK: - Optimizer

/// An optimizer over parameter groups whose state can be saved and restored as named tensors.
public protocol Optimizer: AnyObject {
    /// The parameter groups, in order; state names number parameters across them in this order, so a
    /// checkpoint restores only into an optimizer built with the same groups.
    var groups: [ParameterGroup] { get set }
    /// Applies one update to every parameter that has a gradient (parameters without one are skipped
    /// and their state does not advance, as in PyTorch).
    func step()
    /// The per-parameter state as named tensors, `"\(prefix)state.\(i).exp_avg"`-style, where i counts
    /// parameters across groups in order (torch's optimizer `state_dict` numbering).
    func stateTensors(prefix: String) -> [(String, Tensor)]
    /// Restores state saved by `stateTensors(prefix:)` from an optimizer over the same parameters.
    func loadState(_ tensors: [String: Tensor], prefix: String) throws
    /// Whether a step leaves per-parameter state behind (Adam's moments, SGD's momentum buffers), so
    /// that a checkpoint of a trained run without it cannot resume exactly.
    var keepsStateAfterAStep: Bool { get }
}

extension Optimizer {
    /// The learning rate: reads the first group's, sets every group's (what an LR schedule does).
    public var learningRate: Float {
        get { groups.first?.learningRate ?? 0 }
        set { for i in groups.indices { groups[i].learningRate = newValue } }
    }

    /// Every parameter in group order.
    public var parameters: [Tensor] { groups.flatMap(\.parameters) }

    /// Drops every parameter's gradient (`zero_grad(set_to_none=True)`).
    public func zeroGrad() { for p in parameters { p.grad = nil } }

    /// True unless an optimizer says otherwise (as SGD without momentum does): most keep state.
    public var keepsStateAfterAStep: Bool { true }
}

/// Why an optimizer refused saved state.
public struct OptimizerStateError: Error, CustomStringConvertible {
    /// What was wrong: the state's name and what was expected instead.
    public let description: String
}

/// Per-parameter state keyed by the parameter's position across groups.
private func stateNames(_ prefix: String, _ index: Int, _ key: String) -> String { "\(prefix)state.\(index).\(key)" }

/// Refuses saved state that names a parameter this optimizer does not have or a key it does not keep
/// (a checkpoint from a different model or optimizer); names outside `prefix + "state."` are ignored.
private func checkStateNames(_ tensors: [String: Tensor], prefix: String, parameterCount: Int, keys: Set<String>) throws {
    let head = prefix + "state."
    for name in tensors.keys where name.hasPrefix(head) {
        let rest = name.dropFirst(head.count).split(separator: ".", maxSplits: 1)
        guard rest.count == 2, let index = Int(rest[0]), index >= 0, index < parameterCount, keys.contains(String(rest[1])) else {
            throw OptimizerStateError(description: "optimizer state \(name) does not belong to this optimizer "
                                      + "(\(parameterCount) parameters, keys \(keys.sorted().joined(separator: ", ")))")
        }
    }
}

/// A copy of `tensors[name]` after checking its shape; nil when absent.
private func restore(_ tensors: [String: Tensor], _ name: String, shape: [Int]) throws -> Tensor? {
    guard let t = tensors[name] else { return nil }
    guard t.shape == shape else {
        throw OptimizerStateError(description: "optimizer state \(name): saved shape \(t.shape), parameter needs \(shape)")
    }
    return t.detachedCopy()
}

// MARK: - SGD

/// Stochastic gradient descent exactly as `torch.optim.SGD`:
/// d = g + wd·p; buf = d (first step) or momentum·buf + (1 − dampening)·d; d = d + momentum·buf
/// (Nesterov) or buf; p −= lr·d.
public final class SGD: Optimizer {
    /// The parameter groups, each with its own learning rate and weight decay (L2, added to the gradient).
    public var groups: [ParameterGroup]
    /// Momentum factor (0: plain SGD, no buffers kept), dampening of the gradient's share of the buffer,
    /// and whether to use Nesterov momentum.
    public let momentum: Float, dampening: Float, nesterov: Bool
    /// Momentum buffers by parameter identity, created on a parameter's first step.
    private var buffers: [ObjectIdentifier: Tensor] = [:]

    /// SGD over `groups` with torch's defaults (no momentum, no dampening). Traps when `nesterov` is set
    /// without momentum > 0 and dampening 0, as torch refuses it.
    public init(_ groups: [ParameterGroup], momentum: Float = 0, dampening: Float = 0, nesterov: Bool = false) {
        forgePrecondition(!nesterov || (momentum > 0 && dampening == 0), "SGD: Nesterov momentum requires momentum > 0 and dampening 0")
        self.groups = groups
        self.momentum = momentum
        self.dampening = dampening
        self.nesterov = nesterov
    }

    /// Only with momentum: plain SGD keeps nothing between steps.
    public var keepsStateAfterAStep: Bool { momentum != 0 }

    /// One group with `learningRate` and `weightDecay`.
    public convenience init(_ parameters: [Tensor], learningRate: Float, momentum: Float = 0, dampening: Float = 0,
                            nesterov: Bool = false, weightDecay: Float = 0) {
        self.init([ParameterGroup(parameters: parameters, learningRate: learningRate, weightDecay: weightDecay)],
                  momentum: momentum, dampening: dampening, nesterov: nesterov)
    }

    /// p −= lr · d per element, with d as in the type's comment; momentum buffers are made on a
    /// parameter's first step with a gradient. Traps when a gradient's shape differs from its parameter's.
    public func step() {
        for group in groups {
            let lr = group.learningRate, wd = group.weightDecay
            let mom = momentum, damp = dampening, nest = nesterov
            for p in group.parameters {
                guard let grad = p.grad else { continue }
                forgePrecondition(grad.shape == p.shape, "SGD: gradient shape \(grad.shape) differs from parameter shape \(p.shape)")
                let pp = SendablePointer(p.mutablePointer), gp = SendablePointer(grad.pointer)
                if mom == 0 {
                    parallelFor(p.count) { s, e in
                        for i in s..<e { pp.p[i] -= lr * (gp.p[i] + wd * pp.p[i]) }
                    }
                    continue
                }
                let key = ObjectIdentifier(p)
                if let buf = buffers[key] {
                    let bp = SendablePointer(buf.mutablePointer)
                    parallelFor(p.count) { s, e in
                        for i in s..<e {
                            let d = gp.p[i] + wd * pp.p[i]
                            let b = mom * bp.p[i] + (1 - damp) * d
                            bp.p[i] = b
                            pp.p[i] -= lr * (nest ? d + mom * b : b)
                        }
                    }
                } else {
                    // torch starts the buffer at d itself (no dampening on the first step).
                    let buf = Tensor(uninitializedShape: p.shape)
                    let bp = SendablePointer(buf.mutablePointer)
                    parallelFor(p.count) { s, e in
                        for i in s..<e {
                            let d = gp.p[i] + wd * pp.p[i]
                            bp.p[i] = d
                            pp.p[i] -= lr * (nest ? d + mom * d : d)
                        }
                    }
                    buffers[key] = buf
                }
            }
        }
    }

    /// `state.i.momentum_buffer` for each parameter that has one.
    public func stateTensors(prefix: String = "") -> [(String, Tensor)] {
        parameters.enumerated().compactMap { i, p in
            buffers[ObjectIdentifier(p)].map { (stateNames(prefix, i, "momentum_buffer"), $0) }
        }
    }

    /// Replaces the momentum buffers with copies of `state.i.momentum_buffer` (a parameter without one
    /// starts afresh). Throws `OptimizerStateError`, keeping the current state, on a name this optimizer
    /// does not have or a shape that differs from its parameter's.
    public func loadState(_ tensors: [String: Tensor], prefix: String = "") throws {
        try checkStateNames(tensors, prefix: prefix, parameterCount: parameters.count, keys: ["momentum_buffer"])
        var loaded: [ObjectIdentifier: Tensor] = [:]
        for (i, p) in parameters.enumerated() {
            if let b = try restore(tensors, stateNames(prefix, i, "momentum_buffer"), shape: p.shape) {
                loaded[ObjectIdentifier(p)] = b
            }
        }
        buffers = loaded
    }
}

// MARK: - Adam / AdamW

/// Adam exactly as `torch.optim.Adam` (weight decay added to the gradient as L2), or with
/// `decoupledWeightDecay` as `torch.optim.AdamW` (p ← p·(1 − lr·wd) before the Adam step).
/// Bias corrections use each parameter's own step count.
public class Adam: Optimizer {
    /// The parameter groups, each with its own learning rate and weight decay.
    public var groups: [ParameterGroup]
    /// Decay rates of the first and second moment averages (torch's `betas`), and the term added to
    /// √v̂ in the denominator.
    public let beta1: Float, beta2: Float, eps: Float
    /// False: Adam's L2 (g + wd·p); true: AdamW's decay p·(1 − lr·wd) applied apart from the gradient.
    public let decoupledWeightDecay: Bool
    private struct State {
        var step: Int
        let expAvg: Tensor
        let expAvgSq: Tensor
    }
    private var states: [ObjectIdentifier: State] = [:]

    /// Adam over `groups` with torch's defaults; `decoupledWeightDecay: true` makes it AdamW.
    public init(_ groups: [ParameterGroup], betas: (Float, Float) = (0.9, 0.999), eps: Float = 1e-8,
                decoupledWeightDecay: Bool = false) {
        self.groups = groups
        (beta1, beta2) = betas
        self.eps = eps
        self.decoupledWeightDecay = decoupledWeightDecay
    }

    /// One group with `learningRate` and `weightDecay` (L2, PyTorch's Adam default 0).
    public convenience init(_ parameters: [Tensor], learningRate: Float = 1e-3, betas: (Float, Float) = (0.9, 0.999),
                            eps: Float = 1e-8, weightDecay: Float = 0) {
        self.init([ParameterGroup(parameters: parameters, learningRate: learningRate, weightDecay: weightDecay)],
                  betas: betas, eps: eps)
    }

    /// One Adam step per parameter with a gradient: m = β₁m + (1 − β₁)g, v = β₂v + (1 − β₂)g²,
    /// p −= lr · (m / (1 − β₁ᵗ)) / (√(v / (1 − β₂ᵗ)) + eps), t being that parameter's step count.
    /// Traps when a gradient's shape differs from its parameter's.
    public func step() {
        for group in groups {
            for p in group.parameters {
                guard let grad = p.grad else { continue }
                forgePrecondition(grad.shape == p.shape, "Adam: gradient shape \(grad.shape) differs from parameter shape \(p.shape)")
                let key = ObjectIdentifier(p)
                var st = states[key] ?? State(step: 0, expAvg: .zeros(p.shape), expAvgSq: .zeros(p.shape))
                st.step += 1
                states[key] = st
                // Bias corrections in Double, as torch computes them in Python floats.
                let bc1 = Float(1 - Foundation.pow(Double(beta1), Double(st.step)))
                let bc2 = Float(1 - Foundation.pow(Double(beta2), Double(st.step)))
                let (lr, wd, b1, b2, e, dec) = (group.learningRate, group.weightDecay, beta1, beta2, eps,
                                                Int32(decoupledWeightDecay ? 1 : 0))
                let pp = SendablePointer(p.mutablePointer), gp = SendablePointer(grad.pointer)
                let mp = SendablePointer(st.expAvg.mutablePointer), vp = SendablePointer(st.expAvgSq.mutablePointer)
                parallelFor(p.count) { s, end in
                    fk_adam_update(pp.p + s, gp.p + s, mp.p + s, vp.p + s, end - s, lr, b1, b2, e, wd, dec, bc1, bc2)
                }
            }
        }
    }

    /// `state.i.step` (a scalar), `state.i.exp_avg`, `state.i.exp_avg_sq` for each parameter stepped so far.
    public func stateTensors(prefix: String = "") -> [(String, Tensor)] {
        var out: [(String, Tensor)] = []
        for (i, p) in parameters.enumerated() {
            guard let st = states[ObjectIdentifier(p)] else { continue }
            out.append((stateNames(prefix, i, "step"), Tensor(Float(st.step))))
            out.append((stateNames(prefix, i, "exp_avg"), st.expAvg))
            out.append((stateNames(prefix, i, "exp_avg_sq"), st.expAvgSq))
        }
        return out
    }

    /// Replaces the state with copies of each parameter's saved `step`, `exp_avg` and `exp_avg_sq` (a
    /// parameter without a saved `step` starts afresh). Throws `OptimizerStateError`, keeping the current
    /// state, on an unknown name, a shape that differs from its parameter's, a step that is not a
    /// non-negative whole number, or a step without both averages.
    public func loadState(_ tensors: [String: Tensor], prefix: String = "") throws {
        try checkStateNames(tensors, prefix: prefix, parameterCount: parameters.count, keys: ["step", "exp_avg", "exp_avg_sq"])
        var loaded: [ObjectIdentifier: State] = [:]
        for (i, p) in parameters.enumerated() {
            let stepName = stateNames(prefix, i, "step")
            guard let stepTensor = tensors[stepName] else { continue }
            guard stepTensor.count == 1, stepTensor.item >= 0, stepTensor.item == stepTensor.item.rounded() else {
                throw OptimizerStateError(description: "optimizer state \(stepName) must be one non-negative whole number, got \(stepTensor)")
            }
            guard let m = try restore(tensors, stateNames(prefix, i, "exp_avg"), shape: p.shape),
                  let v = try restore(tensors, stateNames(prefix, i, "exp_avg_sq"), shape: p.shape) else {
                throw OptimizerStateError(description: "optimizer state for parameter \(i) has a step but lacks exp_avg or exp_avg_sq")
            }
            loaded[ObjectIdentifier(p)] = State(step: Int(stepTensor.item), expAvg: m, expAvgSq: v)
        }
        states = loaded
    }
}

/// AdamW exactly as `torch.optim.AdamW`: decoupled weight decay p ← p·(1 − lr·wd), then Adam.
/// PyTorch's default weight decay here is 0.01.
public final class AdamW: Adam {
    /// AdamW over `groups` (their `weightDecay` is the decoupled decay).
    public init(_ groups: [ParameterGroup], betas: (Float, Float) = (0.9, 0.999), eps: Float = 1e-8) {
        super.init(groups, betas: betas, eps: eps, decoupledWeightDecay: true)
    }

    /// One group with `learningRate` and `weightDecay`.
    public convenience init(_ parameters: [Tensor], learningRate: Float = 1e-3, betas: (Float, Float) = (0.9, 0.999),
                            eps: Float = 1e-8, weightDecay: Float = 0.01) {
        self.init([ParameterGroup(parameters: parameters, learningRate: learningRate, weightDecay: weightDecay)],
                  betas: betas, eps: eps)
    }
}
