"""The data layer: the chat model, REALTALK/LoCoMo readers and writers, the raw sheet, convert, validate, download."""
