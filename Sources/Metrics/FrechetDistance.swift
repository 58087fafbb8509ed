import Foundation

// Fréchet distance between two Gaussians fitted to feature sets, in Double:
//   FD = |μ1 − μ2|² + Tr(Σ1 + Σ2 − 2 (Σ1^½ Σ2 Σ1^½)^½)
// (the FID formula; Σ1^½ Σ2 Σ1^½ is symmetric PSD and has the same eigenvalues as Σ1Σ2, so its
// square root's trace is Tr((Σ1Σ2)^½)). Matrix square roots come from a cyclic Jacobi
// eigendecomposition: slow for big matrices, exact enough and simple for the ~128-d features here.

/// Mean vector and covariance (divided by n − 1) of feature rows.
public struct FeatureStatistics: Sendable {
    /// Per-feature mean μ over the rows (`dimension` entries).
    public let mean: [Double]
    /// Row-major d × d.
    public let covariance: [Double]
    /// The feature width d (length of every row).
    public let dimension: Int
    /// The number of rows n the statistics were computed from (at least 2).
    public let count: Int

    /// Fits the Gaussian to `rows` (at least 2, each of the same length d): mean and unbiased covariance.
    public init(rows: [[Double]]) {
        precondition(rows.count >= 2, "FeatureStatistics: need at least 2 rows, got \(rows.count)")
        let d = rows[0].count, n = rows.count
        var mean = [Double](repeating: 0, count: d)
        for row in rows { for j in 0..<d { mean[j] += row[j] } }
        for j in 0..<d { mean[j] /= Double(n) }
        var cov = [Double](repeating: 0, count: d * d)
        var centered = [Double](repeating: 0, count: d)
        for row in rows {
            for j in 0..<d { centered[j] = row[j] - mean[j] }
            for i in 0..<d {
                let ci = centered[i]
                if ci == 0 { continue }
                for j in i..<d { cov[i * d + j] += ci * centered[j] }
            }
        }
        for i in 0..<d {
            for j in i..<d {
                let v = cov[i * d + j] / Double(n - 1)
                cov[i * d + j] = v
                cov[j * d + i] = v
            }
        }
        self.mean = mean
        self.covariance = cov
        self.dimension = d
        self.count = n
    }
}

/// Eigenvalues and eigenvectors of a symmetric matrix by cyclic Jacobi rotations.
/// Returns (values, vectors) with vectors stored column-wise in a row-major d × d array.
public func symmetricEigen(_ matrix: [Double], dimension d: Int, maxSweeps: Int = 100) -> (values: [Double], vectors: [Double]) {
    precondition(matrix.count == d * d, "symmetricEigen: \(matrix.count) entries for dimension \(d)")
    var a = matrix
    var v = [Double](repeating: 0, count: d * d)
    for i in 0..<d { v[i * d + i] = 1 }
    let total = a.reduce(0) { $0 + $1 * $1 }
    for _ in 0..<maxSweeps {
        var off = 0.0
        for i in 0..<d { for j in 0..<d where i != j { off += a[i * d + j] * a[i * d + j] } }
        if off <= 1e-24 * max(total, 1e-300) { break }
        for p in 0..<(d - 1) {
            for q in (p + 1)..<d {
                let apq = a[p * d + q]
                if abs(apq) < 1e-300 { continue }
                let app = a[p * d + p], aqq = a[q * d + q]
                let theta = (aqq - app) / (2 * apq)
                let t = (theta >= 0 ? 1.0 : -1.0) / (abs(theta) + (theta * theta + 1).squareRoot())
                let c = 1 / (t * t + 1).squareRoot(), s = t * c
                // A ← Jᵀ A J, touching rows/columns p and q only.
                for k in 0..<d {
                    let akp = a[k * d + p], akq = a[k * d + q]
                    a[k * d + p] = c * akp - s * akq
                    a[k * d + q] = s * akp + c * akq
                }
                for k in 0..<d {
                    let apk = a[p * d + k], aqk = a[q * d + k]
                    a[p * d + k] = c * apk - s * aqk
                    a[q * d + k] = s * apk + c * aqk
                }
                for k in 0..<d {
                    let vkp = v[k * d + p], vkq = v[k * d + q]
                    v[k * d + p] = c * vkp - s * vkq
                    v[k * d + q] = s * vkp + c * vkq
                }
            }
        }
    }
    return ((0..<d).map { a[$0 * d + $0] }, v)
}

/// The square root of a symmetric positive semi-definite matrix (negative round-off eigenvalues are
/// clamped to 0).
public func symmetricSquareRoot(_ matrix: [Double], dimension d: Int) -> [Double] {
    let (values, vectors) = symmetricEigen(matrix, dimension: d)
    let roots = values.map { max(0, $0).squareRoot() }
    var out = [Double](repeating: 0, count: d * d)
    for i in 0..<d {
        for j in i..<d {
            var s = 0.0
            for k in 0..<d { s += vectors[i * d + k] * roots[k] * vectors[j * d + k] }
            out[i * d + j] = s
            out[j * d + i] = s
        }
    }
    return out
}

/// d × d product of row-major matrices.
func matrixProduct(_ a: [Double], _ b: [Double], dimension d: Int) -> [Double] {
    var out = [Double](repeating: 0, count: d * d)
    for i in 0..<d {
        for k in 0..<d {
            let aik = a[i * d + k]
            if aik == 0 { continue }
            for j in 0..<d { out[i * d + j] += aik * b[k * d + j] }
        }
    }
    return out
}

/// The Fréchet distance between the Gaussians of two feature sets (see the top of the file).
public func frechetDistance(_ x: FeatureStatistics, _ y: FeatureStatistics) -> Double {
    precondition(x.dimension == y.dimension, "frechetDistance: dimensions \(x.dimension) and \(y.dimension) differ")
    let d = x.dimension
    let meanTerm = zip(x.mean, y.mean).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }
    let rootX = symmetricSquareRoot(x.covariance, dimension: d)
    var middle = matrixProduct(matrixProduct(rootX, y.covariance, dimension: d), rootX, dimension: d)
    for i in 0..<d { for j in (i + 1)..<max(i + 1, d) { let s = (middle[i * d + j] + middle[j * d + i]) / 2; middle[i * d + j] = s; middle[j * d + i] = s } }
    let traceRoot = symmetricEigen(middle, dimension: d).values.reduce(0) { $0 + max(0, $1).squareRoot() }
    let traceX = (0..<d).reduce(0) { $0 + x.covariance[$1 * d + $1] }
    let traceY = (0..<d).reduce(0) { $0 + y.covariance[$1 * d + $1] }
    return meanTerm + traceX + traceY - 2 * traceRoot
}
