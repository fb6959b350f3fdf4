from typing import Any

BAD: int
TRUNCATED: int
TRAILING: int
MAX_EMPTY_ITEMS: int

class Malformed(ValueError): ...

class Program:
    def __init__(self, spec: Any) -> None: ...
    def decode(self, data: bytes | bytearray | memoryview, offset: int, /) -> dict[str, Any]: ...
