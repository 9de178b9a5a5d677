import AtomicFiles
import Foundation
import ModelFormats

/// A self-contained HTML report (inline style, SVG plots, no script, no external asset) that a person opens in
/// any browser: what `train`, `eval` and `eval-retrieval` write beside their results. The figures it shows
/// are also embedded as JSON (`<script type="application/json" id="report-data">`), the same numbers the
/// command prints with `--json`, so a reader or a test can check the page against them.
public struct HTMLReport: Sendable {
    public var title: String
    public var subtitle: String?
    private var blocks: [String] = []
    private var data: Data?

    public init(title: String, subtitle: String? = nil) {
        self.title = title
        self.subtitle = subtitle
    }

    public mutating func heading(_ text: String) { blocks.append("<h2>\(htmlEscaped(text))</h2>") }

    public mutating func paragraph(_ text: String) { blocks.append("<p>\(htmlEscaped(text))</p>") }

    public mutating func plot(_ plot: SVGPlot) { blocks.append(##"<figure>\##(plot.svg)</figure>"##) }

    /// A table; `id` names it for readers (and tests); numbers are right-aligned. `shade` colors cells by
    /// value in 0...1 (a confusion matrix's row share).
    public mutating func table(id: String, header: [String], rows: [[String]], shade: [[Double]]? = nil) {
        var out = [##"<table id="\##(htmlEscaped(id))"><thead><tr>"## + header.map { "<th>\(htmlEscaped($0))</th>" }.joined() + "</tr></thead><tbody>"]
        for (r, row) in rows.enumerated() {
            let cells = row.enumerated().map { c, value -> String in
                let numeric = Double(value) != nil
                var style = ""
                if let shade, r < shade.count, c > 0, c - 1 < shade[r].count {
                    let alpha = max(0, min(1, shade[r][c - 1]))
                    style = String(format: ##" style="background: rgba(0, 114, 178, %.3f)""##, alpha * 0.8)
                }
                return "<td\(numeric ? ##" class="num""## : "")\(style)>\(htmlEscaped(value))</td>"
            }
            out.append("<tr>" + cells.joined() + "</tr>")
        }
        out.append("</tbody></table>")
        blocks.append(out.joined(separator: "\n"))
    }

    /// Settings as a two-column table (a Codable configuration's JSON), nested objects flattened to dotted
    /// keys; lists of objects (per-epoch reports) are left to their own tables.
    public mutating func settings(id: String, _ json: Data) {
        guard let value = try? JSONDecoder().decode(JSONValue.self, from: json) else { return }
        var rows: [[String]] = []
        func walk(_ value: JSONValue, _ key: String) {
            switch value {
            case .object(let fields): for k in fields.keys.sorted() { walk(fields[k]!, key.isEmpty ? k : key + "." + k) }
            case .array(let items):
                if items.contains(where: { if case .object = $0 { return true } else { return false } }) { return }
                rows.append([key, items.map(\.text).joined(separator: ", ")])
            default: rows.append([key, value.text])
            }
        }
        walk(value, "")
        table(id: id, header: ["setting", "value"], rows: rows)
    }

    /// The figures behind the page, embedded as JSON.
    public mutating func embed(_ json: Data) { data = json }

    public var html: String {
        let style = """
        body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #1c1e21; max-width: 60rem; margin: 0 auto; padding: 1rem 1.25rem 3rem; }
        h1 { font-size: 1.4rem; margin-bottom: .2rem; } h2 { font-size: 1.1rem; margin-top: 1.6rem; border-bottom: 1px solid #ddd; }
        .subtitle { color: #666; margin-top: 0; }
        table { border-collapse: collapse; font-size: .9rem; margin: .5rem 0; }
        th, td { border: 1px solid #ddd; padding: .2rem .5rem; text-align: left; }
        td.num { text-align: right; font-variant-numeric: tabular-nums; }
        th { background: #f4f4f4; }
        figure { margin: .5rem 0; }
        """
        var page = """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><title>\(htmlEscaped(title))</title><style>\(style)</style></head>
        <body><h1>\(htmlEscaped(title))</h1>
        """
        if let subtitle { page += ##"<p class="subtitle">\##(htmlEscaped(subtitle))</p>"## + "\n" }
        page += blocks.joined(separator: "\n")
        if let data {
            // No "<" reaches the HTML parser inside the script block ("</script>", "<!--"): JSON spells it \u003c.
            let json = String(decoding: data, as: UTF8.self).replacingOccurrences(of: "<", with: "\\u003c")
            page += "\n" + ##"<script type="application/json" id="report-data">"## + json + "</script>"
        }
        return page + "\n</body></html>\n"
    }

    /// Writes the page atomically (a reader sees the old report or the new one).
    public func write(to url: URL) throws {
        try AtomicFile.write(Data(html.utf8), to: url)
    }
}

extension JSONValue {
    /// A value as a settings table shows it.
    fileprivate var text: String {
        switch self {
        case .null: "null"
        case .bool(let b): String(b)
        case .number(let d): d == d.rounded() && abs(d) < 1e15 ? String(Int64(d)) : String(d)
        case .string(let s): s
        case .array(let a): a.map(\.text).joined(separator: ", ")
        case .object: "{…}"
        }
    }
}
