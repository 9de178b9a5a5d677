/// The single-sequence part of a post-processor: ids placed before and after the content when special
/// tokens are requested (`TemplateProcessing` `single: [<bos>, A, <eos>]` → prefix [2], suffix [1]).
struct SpecialTokenTemplate: Sendable, Equatable {
    let prefix: [Int32]
    let suffix: [Int32]

    var count: Int { prefix.count + suffix.count }

    static func make(_ json: JSON?, path: String, fields: JSONFields) throws(TokenizerError) -> SpecialTokenTemplate {
        guard let json, !json.isNull else { return SpecialTokenTemplate(prefix: [], suffix: []) }
        let type = try fields.string(json["type"], path + ".type")
        switch type {
        case "TemplateProcessing":
            let specials = json["special_tokens"]
            var prefix: [Int32] = [], suffix: [Int32] = []
            var seenSequence = false
            for (i, item) in try fields.array(json["single"], path + ".single").enumerated() {
                let itemPath = "\(path).single[\(i)]"
                if item["Sequence"] != nil {
                    guard !seenSequence else {
                        throw .invalidValue(file: fields.file, field: itemPath, message: "more than one sequence in a single template")
                    }
                    seenSequence = true
                } else if let special = item["SpecialToken"] {
                    let name = try fields.string(special["id"], itemPath + ".SpecialToken.id")
                    let idsPath = "\(path).special_tokens.\(name).ids"
                    var ids: [Int32] = []
                    for v in try fields.array(specials?[name]?["ids"], idsPath) {
                        ids.append(try fields.tokenID(v, idsPath))
                    }
                    if seenSequence { suffix += ids } else { prefix += ids }
                } else {
                    throw .unsupportedType(file: fields.file, field: itemPath, type: item.members?.first?.key ?? "?")
                }
            }
            return SpecialTokenTemplate(prefix: prefix, suffix: suffix)
        default:
            throw .unsupportedType(file: fields.file, field: path + ".type", type: type)
        }
    }
}
