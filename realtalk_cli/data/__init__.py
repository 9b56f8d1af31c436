"""The data layer: the chat model, REALTALK/LoCoMo readers and writers, the raw sheet, convert, validate, download.

A new dataset reader: `formats.py` detects a file's layout and reads it into the one `Chat` model of
`model.py` (sessions, messages, events, QA); written there, `validate`, `analyze` and every task take the new
data unchanged. A new chat-export importer (an app's "export chat" file): one module here that turns the
export into a `Chat`, picked by `realtalk convert --format` and its content-based auto-detection in
`convert.py`. Nothing here imports a layer above it.
"""
