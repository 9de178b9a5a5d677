/// A stored document. `id` is the internal id shared with `VectorIndex`;
/// `externalID` is the caller's stable key (file path, URL, ...).
public struct Document: Sendable, Hashable {
    public var id: Int64
    public var externalID: String
    public var text: String
    /// A JSON object; the store rejects invalid JSON.
    public var metadataJSON: String

    public init(id: Int64, externalID: String, text: String, metadataJSON: String = "{}") {
        self.id = id
        self.externalID = externalID
        self.text = text
        self.metadataJSON = metadataJSON
    }
}
