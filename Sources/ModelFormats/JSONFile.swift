import Foundation

/// JSON configuration files decoded with `Codable`: every error names the file and, for a decoding error, the
/// coding path of the offending field ("rope_parameters.full_attention.rope_theta").
public enum JSONFile {
    public static func decode<T: Decodable>(_ type: T.Type, from url: URL) throws(FormatError) -> T {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw FormatError(file: url.path, message: "cannot read: \(error.localizedDescription)")
        }
        return try decode(type, from: data, file: url.path)
    }

    public static func decode<T: Decodable>(_ type: T.Type, from data: Data, file: String) throws(FormatError) -> T {
        do {
            return try JSONDecoder().decode(type, from: data)
        } catch let error as DecodingError {
            if case .dataCorrupted(let context) = error, context.codingPath.isEmpty {
                throw FormatError(file: file, message: "not valid JSON: \(context.debugDescription)")
            }
            throw FormatError(file: file, item: error.codingPathDescription, message: error.shortDescription)
        } catch {
            throw FormatError(file: file, message: "not valid JSON: \(error)")
        }
    }
}
