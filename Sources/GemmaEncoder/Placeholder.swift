@_exported import GemmaModel
