import DocumentIndex
import Foundation
import TaskHeads

/// Library errors name their problem in the library's terms; these wrappers add the flag that fixes it.
enum FlagHints {
    /// Runs `body`; an index built with another model names the --model that opens it.
    static func indexModel<T>(_ directory: URL, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let IndexError.modelMismatch(message) {
            let recorded = try? SearchIndex.manifest(in: directory).model
            throw InputError(description: message + (recorded.map { "; use --model \($0)" } ?? ""))
        }
    }

    /// Runs `body`; training rows too few to hold a validation split out of name --valid.
    static func validation<T>(data: String, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let HoldOutError.tooFewRows(rows, source) {
            throw InputError(description: "\(source ?? data): \(rows) row(s): too few to hold out a validation split (give --valid FILE)")
        }
    }
}

extension IndexModelOption {
    /// Opens the index at `path` with --model, or with the model its manifest records.
    func open(_ path: String) throws -> SearchIndex {
        let url = URL(fileURLWithPath: path)
        return try FlagHints.indexModel(url) { try SearchIndex.open(directory: url, model: model) }
    }
}
