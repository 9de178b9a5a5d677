import Foundation

/// A line chart as inline SVG: one or more series over a shared x axis, with axes, rounded ticks, a legend
/// and a marker on every point (each with a <title>, so hovering shows the value). Small on purpose: what a
/// training or evaluation report draws, with no script and no external asset.
public struct SVGPlot: Sendable {
    public struct Series: Sendable {
        public var name: String
        public var points: [(x: Double, y: Double)]

        public init(name: String, points: [(x: Double, y: Double)]) {
            self.name = name
            self.points = points
        }
    }

    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var series: [Series]
    /// Show x as categories (the given values only, e.g. k of recall@k) rather than a continuous axis.
    public var xTicks: [Double]?
    public var width = 560.0
    public var height = 300.0

    public init(title: String, xLabel: String, yLabel: String, series: [Series], xTicks: [Double]? = nil) {
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.series = series
        self.xTicks = xTicks
    }

    /// Colors that stay apart for the color-blind (Okabe–Ito).
    static let palette = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]

    public var svg: String {
        let left = 58.0, right = 16.0, top = 28.0, bottom = 44.0
        let plotWidth = width - left - right, plotHeight = height - top - bottom
        let points = series.flatMap(\.points).filter { $0.x.isFinite && $0.y.isFinite }
        var (x0, x1) = (points.map(\.x).min() ?? 0, points.map(\.x).max() ?? 1)
        var (y0, y1) = (points.map(\.y).min() ?? 0, points.map(\.y).max() ?? 1)
        if let xTicks { x0 = xTicks.min() ?? x0; x1 = xTicks.max() ?? x1 }
        if x1 <= x0 { x1 = x0 + 1 }
        if y1 <= y0 { (y0, y1) = (y0 - 0.5, y1 + 0.5) }
        let yTicks = Self.ticks(y0, y1)
        y0 = min(y0, yTicks.first ?? y0)
        y1 = max(y1, yTicks.last ?? y1)
        // Categories sit at equal spacing whatever their values (1, 5, 10, 20, 100).
        let categories = xTicks.map { $0.sorted() }
        func px(_ x: Double) -> Double {
            if let categories, let i = categories.firstIndex(of: x) {
                return left + (categories.count > 1 ? Double(i) / Double(categories.count - 1) : 0.5) * plotWidth
            }
            return left + (x - x0) / (x1 - x0) * plotWidth
        }
        func py(_ y: Double) -> Double { top + (1 - (y - y0) / (y1 - y0)) * plotHeight }

        var out = [String]()
        out.append(##"<svg xmlns="http://www.w3.org/2000/svg" class="plot" role="img" width="\##(f(width))" height="\##(f(height))" viewBox="0 0 \##(f(width)) \##(f(height))" font-family="system-ui, sans-serif" font-size="11">"##)
        out.append("<title>\(htmlEscaped(title))</title>")
        out.append(##"<text x="\##(f(left))" y="16" font-size="13" font-weight="600">\##(htmlEscaped(title))</text>"##)
        for t in yTicks {
            out.append(##"<line x1="\##(f(left))" x2="\##(f(left + plotWidth))" y1="\##(f(py(t)))" y2="\##(f(py(t)))" stroke="#e5e5e5"/>"##)
            out.append(##"<text x="\##(f(left - 6))" y="\##(f(py(t) + 4))" text-anchor="end" fill="#555">\##(Self.label(t))</text>"##)
        }
        let xs = categories ?? Self.ticks(x0, x1).filter { $0 >= x0 && $0 <= x1 }
        for t in xs {
            out.append(##"<text x="\##(f(px(t)))" y="\##(f(top + plotHeight + 16))" text-anchor="middle" fill="#555">\##(Self.label(t))</text>"##)
        }
        out.append(##"<rect x="\##(f(left))" y="\##(f(top))" width="\##(f(plotWidth))" height="\##(f(plotHeight))" fill="none" stroke="#999"/>"##)
        out.append(##"<text x="\##(f(left + plotWidth / 2))" y="\##(f(height - 6))" text-anchor="middle">\##(htmlEscaped(xLabel))</text>"##)
        out.append(##"<text transform="translate(14 \##(f(top + plotHeight / 2))) rotate(-90)" text-anchor="middle">\##(htmlEscaped(yLabel))</text>"##)
        for (i, s) in series.enumerated() {
            let color = Self.palette[i % Self.palette.count]
            let valid = s.points.filter { $0.x.isFinite && $0.y.isFinite }
            let path = valid.map { "\(f(px($0.x))),\(f(py($0.y)))" }.joined(separator: " ")
            out.append(##"<g class="series" data-name="\##(htmlEscaped(s.name))">"##)
            if valid.count > 1 { out.append(##"<polyline fill="none" stroke="\##(color)" stroke-width="2" points="\##(path)"/>"##) }
            for p in valid {
                out.append(##"<circle cx="\##(f(px(p.x)))" cy="\##(f(py(p.y)))" r="3" fill="\##(color)"><title>\##(htmlEscaped(s.name)) \##(Self.label(p.x)): \##(String(format: "%.4f", p.y))</title></circle>"##)
            }
            out.append("</g>")
            // Legend, top right, one row per series.
            let ly = top + 14 + Double(i) * 15, lx = left + plotWidth - 150
            out.append(##"<rect x="\##(f(lx))" y="\##(f(ly - 8))" width="10" height="10" fill="\##(color)"/><text x="\##(f(lx + 14))" y="\##(f(ly + 1))">\##(htmlEscaped(s.name))</text>"##)
        }
        out.append("</svg>")
        return out.joined(separator: "\n")
    }

    /// About five round tick values covering [lo, hi].
    static func ticks(_ lo: Double, _ hi: Double) -> [Double] {
        guard hi > lo, lo.isFinite, hi.isFinite else { return [lo] }
        let raw = (hi - lo) / 5
        let magnitude = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 2.5, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? raw
        var t = floor(lo / step) * step
        var out: [Double] = []
        while t <= hi + step * 0.5, out.count < 12 {
            out.append(abs(t) < step * 1e-9 ? 0 : t)
            t += step
        }
        return out
    }

    static func label(_ v: Double) -> String {
        if v == v.rounded(), abs(v) < 1e6 { return String(Int(v)) }
        let s = String(format: "%.4g", v)
        return s
    }

    private func f(_ v: Double) -> String { String(format: "%.1f", v) }
}

/// Text made safe for HTML and SVG.
public func htmlEscaped(_ text: String) -> String {
    var out = ""
    out.reserveCapacity(text.count)
    for c in text {
        switch c {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        default: out.append(c)
        }
    }
    return out
}
