import Foundation

// MARK: - Module

/// A piece of a model that owns parameters and buffers and may contain child modules, like
/// `torch.nn.Module`. The dotted names built from its children (`"blocks.0.attn.c_attn.weight"`)
/// are the names PyTorch's `state_dict()` uses, so checkpoints map one to one.
///
/// A conforming class stores `isTraining` and lists its own tensors in `localParameters` and
/// `localBuffers`. Its children are found by reflection, as mlx-swift's `Module` finds them: every
/// stored property holding a module (or an optional one) is a child named after the property, so
/// a child cannot be forgotten. A class whose checkpoint names differ from its property names
/// overrides `namedChildren`; `unregisteredChildren()` then finds a stored module it left out (the
/// model tests call it for every model).
public protocol Module: AnyObject {
    /// Training mode (dropout active, batch statistics) when true; evaluation mode when false.
    /// Set it through `train()`/`eval()` so children follow.
    var isTraining: Bool { get set }
    /// This module's own trainable tensors (not its children's), in a fixed order.
    var localParameters: [(String, Tensor)] { get }
    /// This module's own non-trained state (running statistics, counters), in a fixed order.
    var localBuffers: [(String, Tensor)] { get }
    /// The direct children with the names that become path components.
    var namedChildren: [(String, any Module)] { get }
}

extension Module {
    /// None by default: a module without weights of its own (a container, an activation) need not list any.
    public var localParameters: [(String, Tensor)] { [] }
    /// None by default: only modules with running statistics or counters (BatchNorm) have buffers.
    public var localBuffers: [(String, Tensor)] { [] }
    /// The stored properties that hold a module, in declaration order, named after the property.
    public var namedChildren: [(String, any Module)] { reflectedChildren() }

    /// The modules held by this object's stored properties (a module, or an optional holding one),
    /// with the property names, in declaration order.
    public func reflectedChildren() -> [(String, any Module)] {
        var out: [(String, any Module)] = []
        for child in Mirror(reflecting: self).children {
            guard let label = child.label else { continue }
            if let module = child.value as? any Module {
                out.append((label, module))
            } else if let optional = child.value as? (any Module)? , let module = optional {
                out.append((label, module))
            }
        }
        return out
    }

    /// Stored module properties of this module or any descendant whose tensors the tree does not
    /// reach (`namedChildren` left them out), as dotted paths: each would never be trained or
    /// saved. Empty when the tree is complete. (A module may flatten a child into its own names, as
    /// the VAE does with its network: that counts as reached.)
    public func unregisteredChildren() -> [String] {
        let reached = Set(stateTensors().map { ObjectIdentifier($0.1) })
        var missing: [String] = []
        for (path, module) in namedModules() {
            for (label, child) in module.reflectedChildren()
            where child.stateTensors().contains(where: { !reached.contains(ObjectIdentifier($0.1)) }) {
                missing.append(path.isEmpty ? label : path + "." + label)
            }
        }
        return missing
    }

    /// Every module in the tree, this one first (name ""), children depth-first, like `named_modules()`.
    public func namedModules(prefix: String = "") -> [(String, any Module)] {
        var out: [(String, any Module)] = [(prefix, self)]
        for (name, child) in namedChildren {
            out += child.namedModules(prefix: prefix.isEmpty ? name : prefix + "." + name)
        }
        return out
    }

    /// All trainable tensors with dotted paths, each tensor once (a tied weight keeps its first name),
    /// in the order of `named_parameters()`: a module's own parameters, then its children's.
    public func namedParameters() -> [(String, Tensor)] {
        var seen = Set<ObjectIdentifier>()
        return allNamed { $0.localParameters }.filter { seen.insert(ObjectIdentifier($0.1)).inserted }
    }

    /// All buffers with dotted paths (BatchNorm `running_mean`, `running_var`, `num_batches_tracked`).
    public func namedBuffers() -> [(String, Tensor)] {
        var seen = Set<ObjectIdentifier>()
        return allNamed { $0.localBuffers }.filter { seen.insert(ObjectIdentifier($0.1)).inserted }
    }

    /// The trainable tensors (as `namedParameters()`, without names).
    public var parameters: [Tensor] { namedParameters().map(\.1) }

    /// Number of trainable scalars (tied weights counted once).
    public var parameterCount: Int { parameters.reduce(0) { $0 + $1.count } }

    /// Everything a checkpoint holds, like `state_dict()`: parameters then buffers per module, and a
    /// tied tensor under every name it has (PyTorch saves both `wte.weight` and `lm_head.weight`).
    public func stateTensors() -> [(String, Tensor)] {
        var out: [(String, Tensor)] = []
        for (path, module) in namedModules() {
            let p = path.isEmpty ? "" : path + "."
            for (n, t) in module.localParameters { out.append((p + n, t)) }
            for (n, t) in module.localBuffers { out.append((p + n, t)) }
        }
        return out
    }

    private func allNamed(_ list: (any Module) -> [(String, Tensor)]) -> [(String, Tensor)] {
        var out: [(String, Tensor)] = []
        for (path, module) in namedModules() {
            let p = path.isEmpty ? "" : path + "."
            for (n, t) in list(module) { out.append((p + n, t)) }
        }
        return out
    }

    /// Sets training mode on this module and every descendant (like `module.train(mode)`).
    public func train(_ mode: Bool = true) {
        for (_, m) in namedModules() { m.isTraining = mode }
    }

    /// Sets evaluation mode on this module and every descendant (like `module.eval()`).
    public func eval() { train(false) }

    /// Drops every parameter's gradient (PyTorch's default `set_to_none=True`).
    public func zeroGrad() {
        for p in parameters { p.grad = nil }
    }

    /// Copies `tensors` (checkpoint name → values) into this module's parameters and buffers in place,
    /// so optimizers and tied weights keep pointing at the same storage.
    ///
    /// Nothing is copied unless the whole load is valid: a shape mismatch is always an error, and with
    /// `strict` so are names the module has but `tensors` lacks and names `tensors` has but the module
    /// lacks (PyTorch's `load_state_dict` rules). Returns the missing and unexpected names.
    @discardableResult
    public func loadState(_ tensors: [String: Tensor], strict: Bool = true) throws -> StateLoadReport {
        let own = stateTensors()
        let ownNames = Set(own.map(\.0))
        var report = StateLoadReport()
        var mismatches: [StateLoadError.ShapeMismatch] = []
        for (name, t) in own {
            guard let src = tensors[name] else { report.missingNames.append(name); continue }
            if src.shape != t.shape {
                mismatches.append(.init(name: name, expected: t.shape, found: src.shape))
            }
        }
        report.unexpectedNames = tensors.keys.filter { !ownNames.contains($0) }.sorted()
        if !mismatches.isEmpty || (strict && (!report.missingNames.isEmpty || !report.unexpectedNames.isEmpty)) {
            throw StateLoadError(missingNames: strict ? report.missingNames : [],
                                 unexpectedNames: strict ? report.unexpectedNames : [],
                                 shapeMismatches: mismatches)
        }
        for (name, t) in own {
            guard let src = tensors[name], src !== t else { continue }
            t.mutablePointer.update(from: src.pointer, count: t.count)
        }
        return report
    }
}

/// What a non-strict `loadState` skipped.
public struct StateLoadReport: Equatable, Sendable {
    /// Names the module has that the loaded tensors lacked (left unchanged).
    public var missingNames: [String] = []
    /// Names among the loaded tensors that the module has no place for (ignored).
    public var unexpectedNames: [String] = []

    /// A report listing `missingNames` and `unexpectedNames` (empty by default: nothing skipped).
    public init(missingNames: [String] = [], unexpectedNames: [String] = []) {
        self.missingNames = missingNames
        self.unexpectedNames = unexpectedNames
    }
}

/// Why `loadState` refused a set of tensors; its description lists every problem at once.
public struct StateLoadError: Error, CustomStringConvertible, Equatable {
    /// One tensor whose offered shape differs from the module's: always refused, strict or not.
    public struct ShapeMismatch: Equatable, Sendable {
        /// The dotted checkpoint name of the tensor (e.g. `"blocks.0.attn.c_attn.weight"`).
        public let name: String
        /// The shape of the module's tensor.
        public let expected: [Int]
        /// The shape of the tensor offered for it.
        public let found: [Int]

        /// A mismatch for `name`: the module has `expected`, the offered tensor `found`.
        public init(name: String, expected: [Int], found: [Int]) {
            self.name = name
            self.expected = expected
            self.found = found
        }
    }
    /// Names the module has that the offered tensors lacked (listed only by a strict load).
    public let missingNames: [String]
    /// Names among the offered tensors that the module has no place for (listed only by a strict load).
    public let unexpectedNames: [String]
    /// Tensors present on both sides with different shapes.
    public let shapeMismatches: [ShapeMismatch]

    /// An error listing the given problems.
    public init(missingNames: [String], unexpectedNames: [String], shapeMismatches: [ShapeMismatch]) {
        self.missingNames = missingNames
        self.unexpectedNames = unexpectedNames
        self.shapeMismatches = shapeMismatches
    }

    /// Every problem on its own line, in PyTorch's `load_state_dict` wording ("missing", "unexpected",
    /// "size mismatch for …").
    public var description: String {
        var lines: [String] = ["Error(s) in loading state:"]
        if !missingNames.isEmpty { lines.append("  missing: " + missingNames.joined(separator: ", ")) }
        if !unexpectedNames.isEmpty { lines.append("  unexpected: " + unexpectedNames.joined(separator: ", ")) }
        for m in shapeMismatches {
            lines.append("  size mismatch for \(m.name): checkpoint has shape \(m.found), the module has shape \(m.expected)")
        }
        return lines.joined(separator: "\n")
    }
}

// MARK: - Layer

/// A module that maps one tensor to one tensor, so it can sit in a `Sequential`.
public protocol Layer: Module {
    /// Applies the module (PyTorch's `forward`).
    func forward(_ x: Tensor) -> Tensor
}

extension Layer {
    /// `layer(x)` reads like PyTorch's `module(x)`.
    public func callAsFunction(_ x: Tensor) -> Tensor { forward(x) }
}

// MARK: - containers

/// Layers applied in order; children are named "0", "1", … like `torch.nn.Sequential`.
public final class Sequential: Layer {
    /// Training mode; set it through `train()`/`eval()` so the layers follow.
    public var isTraining = true
    /// The layers in the order `forward` applies them.
    public let layers: [any Layer]

    /// A sequence of `layers`, applied first to last.
    public init(_ layers: [any Layer]) { self.layers = layers }
    /// A sequence of `layers`, applied first to last (variadic form).
    public convenience init(_ layers: any Layer...) { self.init(layers) }

    /// The layers named by position, "0", "1", …, so checkpoint names match `nn.Sequential`'s.
    public var namedChildren: [(String, any Module)] { layers.enumerated().map { (String($0.offset), $0.element) } }

    /// Feeds `x` through every layer in order; each layer's output shape must fit the next one.
    public func forward(_ x: Tensor) -> Tensor { layers.reduce(x) { $1.forward($0) } }

    /// The number of layers.
    public var count: Int { layers.count }
    /// The layer at `index` (0-based; traps when out of range).
    public subscript(index: Int) -> any Layer { layers[index] }
}

/// A list of same-typed modules named "0", "1", … like `torch.nn.ModuleList` (e.g. a transformer's blocks).
public final class ModuleList<Element: Module>: Module, RandomAccessCollection {
    /// Training mode; set it through `train()`/`eval()` so the elements follow.
    public var isTraining = true
    /// The elements, in order.
    public let modules: [Element]

    /// A list of `modules`, named "0", "1", … in this order.
    public init(_ modules: [Element]) { self.modules = modules }

    /// The elements named by position, "0", "1", …, so checkpoint names match `nn.ModuleList`'s.
    public var namedChildren: [(String, any Module)] { modules.enumerated().map { (String($0.offset), $0.element) } }

    /// The first index, 0.
    public var startIndex: Int { modules.startIndex }
    /// One past the last index (the element count).
    public var endIndex: Int { modules.endIndex }
    /// The element at `index` (0-based; traps when out of range).
    public subscript(index: Int) -> Element { modules[index] }
}
