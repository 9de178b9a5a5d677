/// Limited-memory BFGS with a backtracking (Armijo) line search, in double precision: the full-batch solver
/// of convex head fits (`LinearHeadFit`), where minibatch AdamW stops far from the optimum.
struct LBFGS: Sendable {
    /// Correction pairs kept (the usual 10; more buys little on these well-conditioned problems).
    var memory = 10
    var maxIterations = 1000
    /// Stop when the largest gradient component is below this (the objective is a mean loss over rows, on
    /// unit-variance features). The error left in a parameter is about this over λ: 1e-5 at λ = 1e-3.
    var gradientTolerance = 1e-8
    /// Stop when an iteration lowers the objective by less than this, relative: near the rounding of a
    /// double-precision mean over thousands of rows, where further steps would only chase that rounding.
    var relativeDecrease = 1e-14

    struct Result {
        var x: [Double]
        var value: Double
        var iterations: Int
        /// Whether a tolerance was met (false: out of iterations).
        var converged: Bool
    }

    /// Minimizes `objective` (value and gradient) from `start`; `onIteration(i)` after each iteration.
    func minimize(from start: [Double], objective: ([Double]) -> (Double, [Double]),
                  onIteration: ((Int) -> Void)? = nil) -> Result {
        var x = start
        var (f, g) = objective(x)
        var s: [[Double]] = [], y: [[Double]] = [], rho: [Double] = []
        for iteration in 1...max(maxIterations, 1) {
            if g.lazy.map(abs).max() ?? 0 <= gradientTolerance { return Result(x: x, value: f, iterations: iteration - 1, converged: true) }
            // Two-loop recursion: direction = −H·g with H the implicit inverse-Hessian estimate.
            var q = g
            var alpha = [Double](repeating: 0, count: s.count)
            for i in s.indices.reversed() {
                alpha[i] = rho[i] * dot(s[i], q)
                axpy(-alpha[i], y[i], &q)
            }
            // Initial scaling sᵀy / yᵀy; before any pair, a first step of unit length.
            let gamma = s.isEmpty ? 1 / max(dot(g, g).squareRoot(), 1e-12) : dot(s.last!, y.last!) / dot(y.last!, y.last!)
            for i in q.indices { q[i] *= gamma }
            for i in s.indices {
                let beta = rho[i] * dot(y[i], q)
                axpy(alpha[i] - beta, s[i], &q)
            }
            var direction = q.map { -$0 }
            var slope = dot(g, direction)
            if !(slope < 0) {  // not a descent direction (rounding): restart from steepest descent
                s = []; y = []; rho = []
                direction = g.map { -$0 / max(dot(g, g).squareRoot(), 1e-12) }
                slope = dot(g, direction)
            }
            var step = 1.0, accepted: (x: [Double], f: Double, g: [Double])?
            for _ in 0..<40 {
                var candidate = x
                axpy(step, direction, &candidate)
                let (fc, gc) = objective(candidate)
                if fc.isFinite, fc <= f + 1e-4 * step * slope { accepted = (candidate, fc, gc); break }
                step *= 0.5
            }
            // No step lowers the objective: x is optimal to the precision the objective is computed in.
            guard let next = accepted else { return Result(x: x, value: f, iterations: iteration, converged: true) }
            let sk = zip(next.x, x).map { $0 - $1 }, yk = zip(next.g, g).map { $0 - $1 }
            let sy = dot(sk, yk)
            if sy > 1e-12 * dot(yk, yk).squareRoot() * dot(sk, sk).squareRoot() {
                s.append(sk); y.append(yk); rho.append(1 / sy)
                if s.count > memory { s.removeFirst(); y.removeFirst(); rho.removeFirst() }
            }
            let decrease = f - next.f
            (x, f, g) = next
            onIteration?(iteration)
            if decrease <= relativeDecrease * max(abs(f), 1) { return Result(x: x, value: f, iterations: iteration, converged: true) }
        }
        return Result(x: x, value: f, iterations: maxIterations, converged: false)
    }
}

private func dot(_ a: [Double], _ b: [Double]) -> Double {
    var sum = 0.0
    for i in a.indices { sum += a[i] * b[i] }
    return sum
}

private func axpy(_ a: Double, _ x: [Double], _ y: inout [Double]) {
    for i in y.indices { y[i] += a * x[i] }
}
