import Foundation
import ModelFormats

/// A JSON Schema, the subset the service's OpenAPI description uses, derived from the same Codable types the
/// handlers decode and encode (`SchemaRecorder`), so the description cannot drift from what the server does.
indirect enum APISchema: Equatable, Sendable {
    case string, integer, number, boolean
    /// `items` for arrays; `properties` with the required keys for objects (no other keys allowed), or `values`
    /// for string-keyed maps; `anyOf` where a field takes several shapes (anyOf, not oneOf: `[]` is both a list of
    /// strings and a list of token ids).
    case array(APISchema)
    case object([String: APISchema], required: Set<String>)
    case map(APISchema)
    case anyOf([APISchema])
    /// Any JSON value (a document's stored metadata).
    case any

    /// The schema as OpenAPI 3.1 (JSON Schema 2020-12) writes it.
    var json: JSONValue {
        switch self {
        case .string: return .object(["type": .string("string")])
        case .integer: return .object(["type": .string("integer")])
        case .number: return .object(["type": .string("number")])
        case .boolean: return .object(["type": .string("boolean")])
        case .any: return .object([:])
        case .array(let items): return .object(["type": .string("array"), "items": items.json])
        case .map(let values): return .object(["type": .string("object"), "additionalProperties": values.json])
        case .anyOf(let options): return .object(["anyOf": .array(options.map(\.json))])
        case let .object(properties, required):
            var o: [String: JSONValue] = ["type": .string("object"), "properties": .object(properties.mapValues(\.json)),
                                          "additionalProperties": .bool(false)]
            if !required.isEmpty { o["required"] = .array(required.sorted().map(JSONValue.string)) }
            return .object(o)
        }
    }

    /// Two examples' schemas as one: objects merge their properties (required only where both require), other
    /// differing shapes become alternatives.
    func merged(with other: APISchema) -> APISchema {
        switch (self, other) {
        case _ where self == other: return self
        case let (.object(a, ra), .object(b, rb)):
            var properties = a
            for (key, schema) in b { properties[key] = properties[key].map { $0.merged(with: schema) } ?? schema }
            return .object(properties, required: ra.intersection(rb).intersection(Set(a.keys)).intersection(Set(b.keys)))
        case let (.array(a), .array(b)): return .array(a.merged(with: b))
        case let (.map(a), .map(b)): return .map(a.merged(with: b))
        case (.integer, .number), (.number, .integer): return .number
        case let (.anyOf(a), .anyOf(b)): return b.reduce(APISchema.anyOf(a)) { $0.merged(with: $1) }
        case let (.anyOf(a), b): return a.contains(b) ? self : .anyOf(a + [b])
        case let (a, .anyOf(b)): return b.contains(a) ? other : .anyOf([a] + b)
        default: return .anyOf([self, other])
        }
    }

    /// Why `value` does not match the schema (nil when it does), with the JSON path of the first mismatch:
    /// what the tests check every live answer with.
    func violation(of value: JSONValue, at path: String = "$") -> String? {
        switch (self, value) {
        case (.any, _), (.string, .string), (.boolean, .bool), (.number, .number): return nil
        case (.integer, .number(let x)): return x == x.rounded() ? nil : "\(path): \(x) is not an integer"
        case let (.array(items), .array(elements)):
            for (i, element) in elements.enumerated() {
                if let v = items.violation(of: element, at: "\(path)[\(i)]") { return v }
            }
            return nil
        case let (.map(values), .object(fields)):
            for (key, field) in fields.sorted(by: { $0.key < $1.key }) {
                if let v = values.violation(of: field, at: "\(path).\(key)") { return v }
            }
            return nil
        case let (.object(properties, required), .object(fields)):
            if let missing = required.sorted().first(where: { fields[$0] == nil }) { return "\(path): missing \(missing)" }
            for (key, field) in fields.sorted(by: { $0.key < $1.key }) {
                guard let schema = properties[key] else { return "\(path): \(key) is not in the schema" }
                if let v = schema.violation(of: field, at: "\(path).\(key)") { return v }
            }
            return nil
        case let (.anyOf(options), _):
            let reasons = options.map { $0.violation(of: value, at: path) }
            return reasons.contains { $0 == nil } ? nil : "\(path): matches none of \(options.count) shapes (\(reasons.compactMap { $0 }.joined(separator: "; ")))"
        default:
            return "\(path): \(value.kindName) where the schema has \(json.typeName)"
        }
    }
}

extension APISchema {
    /// Reads a schema back from the description (`components` resolves `$ref`s): what a client, or a test,
    /// checks answers against, so the check is of the document the server publishes.
    init(json: JSONValue, components: [String: JSONValue] = [:]) throws {
        guard case .object(let o) = json else { throw SchemaRecorder.RecorderError("a schema must be an object") }
        if case .string(let ref)? = o["$ref"] {
            let name = String(ref.split(separator: "/").last ?? "")
            guard let target = components[name] else { throw SchemaRecorder.RecorderError("unknown $ref \(ref)") }
            self = try APISchema(json: target, components: components)
            return
        }
        if case .array(let options)? = o["anyOf"] {
            self = .anyOf(try options.map { try APISchema(json: $0, components: components) })
            return
        }
        switch o["type"] {
        case nil: self = .any
        case .string("string")?: self = .string
        case .string("integer")?: self = .integer
        case .string("number")?: self = .number
        case .string("boolean")?: self = .boolean
        case .string("array")?: self = .array(try APISchema(json: o["items"] ?? .object([:]), components: components))
        case .string("object")?:
            if case .object(let values)? = o["additionalProperties"] {
                self = .map(try APISchema(json: .object(values), components: components))
            } else {
                guard case .object(let properties)? = o["properties"] else { throw SchemaRecorder.RecorderError("an object schema without properties") }
                var required: Set<String> = []
                if case .array(let keys)? = o["required"] { for case .string(let k) in keys { required.insert(k) } }
                self = .object(try properties.mapValues { try APISchema(json: $0, components: components) }, required: required)
            }
        case let other?: throw SchemaRecorder.RecorderError("unknown schema type \(other)")
        }
    }
}

/// Checks JSON against a schema of the published description, for clients and tests outside the module.
public enum OpenAPIValidation {
    /// Why `body` does not match `schema` (a schema object from /openapi.json, `$ref`s resolved against
    /// `components`, the document's `components.schemas`), or nil when it does.
    public static func violation(of body: Data, schema: Data, components: Data? = nil) throws -> String? {
        let decoder = JSONDecoder()
        var resolved: [String: JSONValue] = [:]
        if let components, case .object(let o) = try decoder.decode(JSONValue.self, from: components) { resolved = o }
        let parsed = try APISchema(json: try decoder.decode(JSONValue.self, from: schema), components: resolved)
        return parsed.violation(of: try decoder.decode(JSONValue.self, from: body))
    }
}

extension JSONValue {
    var kindName: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .number: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }

    var typeName: String {
        if case .object(let o) = self, case .string(let t)? = o["type"] { return t }
        return "another shape"
    }
}

/// A type whose JSON shape the recorders cannot see by walking its Codable code: a custom decoder that tries
/// several shapes (an input that is a string or a list), described by hand next to that code.
protocol SchemaDescribed {
    static var schema: APISchema { get }
    /// A value to hand back while recording a decoder (any valid one).
    static var schemaPlaceholder: Self { get }
}

/// A `[String: V]` map, which encodes as an object with its own keys: recorded as `additionalProperties`.
protocol StringKeyedMap {
    var mapValues: [any Encodable] { get }
}

extension Dictionary: StringKeyedMap where Key == String, Value: Encodable {
    var mapValues: [any Encodable] { Array(values) }
}

/// Derives schemas from Codable types: a request type by decoding it (every key its `init(from:)` asks for,
/// optional where it asks with `decodeIfPresent`), a response type by encoding example values (every key its
/// `encode(to:)` writes, optional where it writes with `encodeIfPresent`; examples with every optional set).
enum SchemaRecorder {
    static func schema<T: Decodable>(decoding type: T.Type) throws -> APISchema {
        let recorder = DecodingRecorder()
        _ = try recorder.decode(type)
        return recorder.schema
    }

    static func schema<T: Encodable>(encoding examples: [T]) throws -> APISchema {
        var result: APISchema?
        for example in examples {
            let schema = try EncodingRecorder.schema(of: example)
            result = result.map { $0.merged(with: schema) } ?? schema
        }
        guard let result else { throw RecorderError("no example to record a schema from") }
        return result
    }

    struct RecorderError: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }
}

// MARK: Decoding

/// A Decoder that answers every request with a placeholder and writes down what was asked.
private final class DecodingRecorder: Decoder {
    var codingPath: [any CodingKey] = []
    var userInfo: [CodingUserInfoKey: Any] = [:]
    /// What the value turned out to be, set by whichever container the type's decoder asked for.
    var schema: APISchema = .any

    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        if let described = type as? SchemaDescribed.Type {
            schema = described.schema
            return described.schemaPlaceholder as! T
        }
        if let primitive = Self.primitive(type) {
            schema = primitive.schema
            return primitive.value as! T
        }
        return try T(from: self)
    }

    /// JSON's scalars, with a placeholder value of the exact type asked for.
    static func primitive(_ type: Any.Type) -> (schema: APISchema, value: Any)? {
        switch type {
        case is String.Type: (.string, "")
        case is Bool.Type: (.boolean, false)
        case is Double.Type: (.number, 0.0)
        case is Float.Type: (.number, Float(0))
        case is Int.Type: (.integer, 0)
        case is Int32.Type: (.integer, Int32(0))
        case is Int64.Type: (.integer, Int64(0))
        case is Int8.Type: (.integer, Int8(0))
        case is Int16.Type: (.integer, Int16(0))
        case is UInt8.Type: (.integer, UInt8(0))
        case is UInt16.Type: (.integer, UInt16(0))
        case is UInt.Type: (.integer, UInt(0))
        case is UInt32.Type: (.integer, UInt32(0))
        case is UInt64.Type: (.integer, UInt64(0))
        default: nil
        }
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        let keyed = KeyedRecorder<Key>(owner: self)
        schema = .object([:], required: [])
        return KeyedDecodingContainer(keyed)
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        schema = .array(.any)
        return UnkeyedRecorder(owner: self)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer { SingleRecorder(owner: self) }

    /// Records a nested value's schema on a fresh recorder.
    func nested<T: Decodable>(_ type: T.Type) throws -> (T, APISchema) {
        let child = DecodingRecorder()
        child.codingPath = codingPath
        let value = try child.decode(type)
        return (value, child.schema)
    }

    func addProperty(_ key: String, _ schema: APISchema, required: Bool) {
        guard case .object(var properties, var keys) = self.schema else { return }
        properties[key] = schema
        if required { keys.insert(key) }
        self.schema = .object(properties, required: keys)
    }

    struct KeyedRecorder<Key: CodingKey>: KeyedDecodingContainerProtocol {
        let owner: DecodingRecorder
        var codingPath: [any CodingKey] { owner.codingPath }
        var allKeys: [Key] { [] }
        func contains(_ key: Key) -> Bool { true }
        func decodeNil(forKey key: Key) throws -> Bool { false }

        func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
            let (value, schema) = try owner.nested(type)
            owner.addProperty(key.stringValue, schema, required: true)
            return value
        }

        func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
            let (_, schema) = try owner.nested(type)
            owner.addProperty(key.stringValue, schema, required: false)
            return nil
        }

        func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try decode(type as Bool.Type, key) }
        func decode(_ type: String.Type, forKey key: Key) throws -> String { try decode(type as String.Type, key) }
        func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try decode(type as Double.Type, key) }
        func decode(_ type: Float.Type, forKey key: Key) throws -> Float { try decode(type as Float.Type, key) }
        func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try decode(type as Int.Type, key) }
        func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try decode(type as Int8.Type, key) }
        func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try decode(type as Int16.Type, key) }
        func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try decode(type as Int32.Type, key) }
        func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try decode(type as Int64.Type, key) }
        func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try decode(type as UInt.Type, key) }
        func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try decode(type as UInt8.Type, key) }
        func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try decode(type as UInt16.Type, key) }
        func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try decode(type as UInt32.Type, key) }
        func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try decode(type as UInt64.Type, key) }
        func decodeIfPresent(_ type: Bool.Type, forKey key: Key) throws -> Bool? { try optional(type, key) }
        func decodeIfPresent(_ type: String.Type, forKey key: Key) throws -> String? { try optional(type, key) }
        func decodeIfPresent(_ type: Double.Type, forKey key: Key) throws -> Double? { try optional(type, key) }
        func decodeIfPresent(_ type: Float.Type, forKey key: Key) throws -> Float? { try optional(type, key) }
        func decodeIfPresent(_ type: Int.Type, forKey key: Key) throws -> Int? { try optional(type, key) }
        func decodeIfPresent(_ type: Int8.Type, forKey key: Key) throws -> Int8? { try optional(type, key) }
        func decodeIfPresent(_ type: Int16.Type, forKey key: Key) throws -> Int16? { try optional(type, key) }
        func decodeIfPresent(_ type: Int32.Type, forKey key: Key) throws -> Int32? { try optional(type, key) }
        func decodeIfPresent(_ type: Int64.Type, forKey key: Key) throws -> Int64? { try optional(type, key) }
        func decodeIfPresent(_ type: UInt.Type, forKey key: Key) throws -> UInt? { try optional(type, key) }
        func decodeIfPresent(_ type: UInt8.Type, forKey key: Key) throws -> UInt8? { try optional(type, key) }
        func decodeIfPresent(_ type: UInt16.Type, forKey key: Key) throws -> UInt16? { try optional(type, key) }
        func decodeIfPresent(_ type: UInt32.Type, forKey key: Key) throws -> UInt32? { try optional(type, key) }
        func decodeIfPresent(_ type: UInt64.Type, forKey key: Key) throws -> UInt64? { try optional(type, key) }

        private func decode<T: Decodable>(_ type: T.Type, _ key: Key) throws -> T { try decode(type, forKey: key) }
        private func optional<T: Decodable>(_ type: T.Type, _ key: Key) throws -> T? { try decodeIfPresent(type, forKey: key) }

        func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
            throw SchemaRecorder.RecorderError("nested containers are not recorded (\(key.stringValue))")
        }
        func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
            throw SchemaRecorder.RecorderError("nested containers are not recorded (\(key.stringValue))")
        }
        func superDecoder() throws -> any Decoder { owner }
        func superDecoder(forKey key: Key) throws -> any Decoder { owner }
    }

    /// An array that holds one element: enough to learn the element's schema.
    final class UnkeyedRecorder: UnkeyedDecodingContainer {
        let owner: DecodingRecorder
        var codingPath: [any CodingKey] { owner.codingPath }
        var count: Int? { 1 }
        var currentIndex = 0
        var isAtEnd: Bool { currentIndex > 0 }
        init(owner: DecodingRecorder) { self.owner = owner }

        func decodeNil() throws -> Bool { false }
        func decode<T: Decodable>(_ type: T.Type) throws -> T {
            let (value, schema) = try owner.nested(type)
            owner.schema = .array(schema)
            currentIndex += 1
            return value
        }
        func decode(_ type: Bool.Type) throws -> Bool { try element(type) }
        func decode(_ type: String.Type) throws -> String { try element(type) }
        func decode(_ type: Double.Type) throws -> Double { try element(type) }
        func decode(_ type: Float.Type) throws -> Float { try element(type) }
        func decode(_ type: Int.Type) throws -> Int { try element(type) }
        func decode(_ type: Int8.Type) throws -> Int8 { try element(type) }
        func decode(_ type: Int16.Type) throws -> Int16 { try element(type) }
        func decode(_ type: Int32.Type) throws -> Int32 { try element(type) }
        func decode(_ type: Int64.Type) throws -> Int64 { try element(type) }
        func decode(_ type: UInt.Type) throws -> UInt { try element(type) }
        func decode(_ type: UInt8.Type) throws -> UInt8 { try element(type) }
        func decode(_ type: UInt16.Type) throws -> UInt16 { try element(type) }
        func decode(_ type: UInt32.Type) throws -> UInt32 { try element(type) }
        func decode(_ type: UInt64.Type) throws -> UInt64 { try element(type) }
        private func element<T: Decodable>(_ type: T.Type) throws -> T { try decode(type) }
        func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
            throw SchemaRecorder.RecorderError("nested containers are not recorded")
        }
        func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
            throw SchemaRecorder.RecorderError("nested containers are not recorded")
        }
        func superDecoder() throws -> any Decoder { owner }
    }

    struct SingleRecorder: SingleValueDecodingContainer {
        let owner: DecodingRecorder
        var codingPath: [any CodingKey] { owner.codingPath }
        func decodeNil() -> Bool { false }
        func decode<T: Decodable>(_ type: T.Type) throws -> T {
            let (value, schema) = try owner.nested(type)
            owner.schema = schema
            return value
        }
        func decode(_ type: Bool.Type) throws -> Bool { try value(type) }
        func decode(_ type: String.Type) throws -> String { try value(type) }
        func decode(_ type: Double.Type) throws -> Double { try value(type) }
        func decode(_ type: Float.Type) throws -> Float { try value(type) }
        func decode(_ type: Int.Type) throws -> Int { try value(type) }
        func decode(_ type: Int8.Type) throws -> Int8 { try value(type) }
        func decode(_ type: Int16.Type) throws -> Int16 { try value(type) }
        func decode(_ type: Int32.Type) throws -> Int32 { try value(type) }
        func decode(_ type: Int64.Type) throws -> Int64 { try value(type) }
        func decode(_ type: UInt.Type) throws -> UInt { try value(type) }
        func decode(_ type: UInt8.Type) throws -> UInt8 { try value(type) }
        func decode(_ type: UInt16.Type) throws -> UInt16 { try value(type) }
        func decode(_ type: UInt32.Type) throws -> UInt32 { try value(type) }
        func decode(_ type: UInt64.Type) throws -> UInt64 { try value(type) }
        private func value<T: Decodable>(_ type: T.Type) throws -> T { try decode(type) }
    }
}

// MARK: Encoding

/// An Encoder that builds the schema of what it is given instead of its bytes.
private final class EncodingRecorder: Encoder {
    var codingPath: [any CodingKey] = []
    var userInfo: [CodingUserInfoKey: Any] = [:]
    var schema: APISchema = .any

    static func schema(of value: any Encodable) throws -> APISchema {
        let recorder = EncodingRecorder()
        try recorder.record(value)
        return recorder.schema
    }

    func record(_ value: any Encodable) throws {
        if let described = type(of: value) as? SchemaDescribed.Type {
            schema = described.schema
        } else if let primitive = DecodingRecorder.primitive(type(of: value)) {
            schema = primitive.schema
        } else if let map = value as? StringKeyedMap {
            var values: APISchema?
            for element in map.mapValues {
                let s = try Self.schema(of: element)
                values = values.map { $0.merged(with: s) } ?? s
            }
            schema = .map(values ?? .any)
        } else {
            try value.encode(to: self)
        }
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        schema = .object([:], required: [])
        return KeyedEncodingContainer(KeyedRecorder<Key>(owner: self))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        schema = .array(.any)
        return UnkeyedRecorder(owner: self)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer { SingleRecorder(owner: self) }

    func addProperty(_ key: String, _ value: APISchema, required: Bool) {
        guard case .object(var properties, var keys) = schema else { return }
        properties[key] = value
        if required { keys.insert(key) }
        schema = .object(properties, required: keys)
    }

    struct KeyedRecorder<Key: CodingKey>: KeyedEncodingContainerProtocol {
        let owner: EncodingRecorder
        var codingPath: [any CodingKey] { owner.codingPath }

        mutating func encodeNil(forKey key: Key) throws {}
        mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
            owner.addProperty(key.stringValue, try EncodingRecorder.schema(of: value), required: true)
        }
        mutating func encodeIfPresent<T: Encodable>(_ value: T?, forKey key: Key) throws {
            guard let value else {
                throw SchemaRecorder.RecorderError("the example leaves \(key.stringValue) out: give examples with every optional field set")
            }
            owner.addProperty(key.stringValue, try EncodingRecorder.schema(of: value), required: false)
        }
        mutating func encode(_ value: Bool, forKey key: Key) throws { try encode(value as Bool?, required: key) }
        mutating func encode(_ value: String, forKey key: Key) throws { try encode(value as String?, required: key) }
        mutating func encode(_ value: Double, forKey key: Key) throws { try encode(value as Double?, required: key) }
        mutating func encode(_ value: Float, forKey key: Key) throws { try encode(value as Float?, required: key) }
        mutating func encode(_ value: Int, forKey key: Key) throws { try encode(value as Int?, required: key) }
        mutating func encode(_ value: Int8, forKey key: Key) throws { try encode(value as Int8?, required: key) }
        mutating func encode(_ value: Int16, forKey key: Key) throws { try encode(value as Int16?, required: key) }
        mutating func encode(_ value: Int32, forKey key: Key) throws { try encode(value as Int32?, required: key) }
        mutating func encode(_ value: Int64, forKey key: Key) throws { try encode(value as Int64?, required: key) }
        mutating func encode(_ value: UInt, forKey key: Key) throws { try encode(value as UInt?, required: key) }
        mutating func encode(_ value: UInt8, forKey key: Key) throws { try encode(value as UInt8?, required: key) }
        mutating func encode(_ value: UInt16, forKey key: Key) throws { try encode(value as UInt16?, required: key) }
        mutating func encode(_ value: UInt32, forKey key: Key) throws { try encode(value as UInt32?, required: key) }
        mutating func encode(_ value: UInt64, forKey key: Key) throws { try encode(value as UInt64?, required: key) }
        mutating func encodeIfPresent(_ value: Bool?, forKey key: Key) throws { try encodeIfPresent(value, optional: key) }
        mutating func encodeIfPresent(_ value: String?, forKey key: Key) throws { try encodeIfPresent(value, optional: key) }
        mutating func encodeIfPresent(_ value: Double?, forKey key: Key) throws { try encodeIfPresent(value, optional: key) }
        mutating func encodeIfPresent(_ value: Float?, forKey key: Key) throws { try encodeIfPresent(value, optional: key) }
        mutating func encodeIfPresent(_ value: Int?, forKey key: Key) throws { try encodeIfPresent(value, optional: key) }
        mutating func encodeIfPresent(_ value: Int8?, forKey key: Key) throws { try encodeIfPresent(value, optional: key) }
        mutating func encodeIfPresent(_ value: Int16?, forKey key: Key) throws { try encodeIfPresent(value, optional: key) }
        mutating func encodeIfPresent(_ value: Int32?, forKey key: Key) throws { try encodeIfPresent(value, optional: key) }
        mutating func encodeIfPresent(_ value: Int64?, forKey key: Key) throws { try encodeIfPresent(value, optional: key) }
        mutating func encodeIfPresent(_ value: UInt?, forKey key: Key) throws { try encodeIfPresent(value, optional: key) }
        mutating func encodeIfPresent(_ value: UInt8?, forKey key: Key) throws { try encodeIfPresent(value, optional: key) }
        mutating func encodeIfPresent(_ value: UInt16?, forKey key: Key) throws { try encodeIfPresent(value, optional: key) }
        mutating func encodeIfPresent(_ value: UInt32?, forKey key: Key) throws { try encodeIfPresent(value, optional: key) }
        mutating func encodeIfPresent(_ value: UInt64?, forKey key: Key) throws { try encodeIfPresent(value, optional: key) }

        private mutating func encode<T: Encodable>(_ value: T?, required key: Key) throws { try encode(value!, forKey: key) }
        private mutating func encodeIfPresent<T: Encodable>(_ value: T?, optional key: Key) throws { try encodeIfPresent(value, forKey: key) }

        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
            EncodingRecorder().container(keyedBy: keyType)
        }
        mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer { EncodingRecorder().unkeyedContainer() }
        mutating func superEncoder() -> any Encoder { owner }
        mutating func superEncoder(forKey key: Key) -> any Encoder { owner }
    }

    /// Every element's schema merged: the items schema.
    final class UnkeyedRecorder: UnkeyedEncodingContainer {
        let owner: EncodingRecorder
        var codingPath: [any CodingKey] { owner.codingPath }
        var count = 0
        var items: APISchema?
        init(owner: EncodingRecorder) { self.owner = owner }

        func encodeNil() throws {}
        func encode<T: Encodable>(_ value: T) throws { try add(value) }
        private func add<T: Encodable>(_ value: T) throws {
            let s = try EncodingRecorder.schema(of: value)
            items = items.map { $0.merged(with: s) } ?? s
            owner.schema = .array(items!)
            count += 1
        }
        func encode(_ value: Bool) throws { try add(value) }
        func encode(_ value: String) throws { try add(value) }
        func encode(_ value: Double) throws { try add(value) }
        func encode(_ value: Float) throws { try add(value) }
        func encode(_ value: Int) throws { try add(value) }
        func encode(_ value: Int8) throws { try add(value) }
        func encode(_ value: Int16) throws { try add(value) }
        func encode(_ value: Int32) throws { try add(value) }
        func encode(_ value: Int64) throws { try add(value) }
        func encode(_ value: UInt) throws { try add(value) }
        func encode(_ value: UInt8) throws { try add(value) }
        func encode(_ value: UInt16) throws { try add(value) }
        func encode(_ value: UInt32) throws { try add(value) }
        func encode(_ value: UInt64) throws { try add(value) }
        func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
            EncodingRecorder().container(keyedBy: keyType)
        }
        func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer { EncodingRecorder().unkeyedContainer() }
        func superEncoder() -> any Encoder { owner }
    }

    struct SingleRecorder: SingleValueEncodingContainer {
        let owner: EncodingRecorder
        var codingPath: [any CodingKey] { owner.codingPath }
        mutating func encodeNil() throws {}
        mutating func encode<T: Encodable>(_ value: T) throws { owner.schema = try EncodingRecorder.schema(of: value) }
        mutating func encode(_ value: Bool) throws { owner.schema = DecodingRecorder.primitive(Bool.self)!.schema }
        mutating func encode(_ value: String) throws { owner.schema = DecodingRecorder.primitive(String.self)!.schema }
        mutating func encode(_ value: Double) throws { owner.schema = DecodingRecorder.primitive(Double.self)!.schema }
        mutating func encode(_ value: Float) throws { owner.schema = DecodingRecorder.primitive(Float.self)!.schema }
        mutating func encode(_ value: Int) throws { owner.schema = DecodingRecorder.primitive(Int.self)!.schema }
        mutating func encode(_ value: Int8) throws { owner.schema = DecodingRecorder.primitive(Int8.self)!.schema }
        mutating func encode(_ value: Int16) throws { owner.schema = DecodingRecorder.primitive(Int16.self)!.schema }
        mutating func encode(_ value: Int32) throws { owner.schema = DecodingRecorder.primitive(Int32.self)!.schema }
        mutating func encode(_ value: Int64) throws { owner.schema = DecodingRecorder.primitive(Int64.self)!.schema }
        mutating func encode(_ value: UInt) throws { owner.schema = DecodingRecorder.primitive(UInt.self)!.schema }
        mutating func encode(_ value: UInt8) throws { owner.schema = DecodingRecorder.primitive(UInt8.self)!.schema }
        mutating func encode(_ value: UInt16) throws { owner.schema = DecodingRecorder.primitive(UInt16.self)!.schema }
        mutating func encode(_ value: UInt32) throws { owner.schema = DecodingRecorder.primitive(UInt32.self)!.schema }
        mutating func encode(_ value: UInt64) throws { owner.schema = DecodingRecorder.primitive(UInt64.self)!.schema }
    }
}

// MARK: Types that take several shapes

extension InputBatch: SchemaDescribed {
    static var schema: APISchema { .anyOf([.string, .array(.string), .array(.integer), .array(.array(.integer))]) }
    static var schemaPlaceholder: InputBatch { InputBatch(texts: [""]) }
}

extension RerankRequest.Document: SchemaDescribed {
    static var schema: APISchema { .anyOf([.string, .object(["text": .string], required: ["text"])]) }
    static var schemaPlaceholder: RerankRequest.Document { RerankRequest.Document(text: "") }
}

extension JSONValue: SchemaDescribed {
    static var schema: APISchema { .any }
    static var schemaPlaceholder: JSONValue { .null }
}
