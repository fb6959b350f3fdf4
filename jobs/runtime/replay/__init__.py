"""The local replay (`replay --engine local`): a JSON-lines events file through the join core into
JSON-lines outputs, no network (`local`); `jsonl` parses events files for both replay engines."""
