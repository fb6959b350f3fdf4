"""The shared library: code every deployable (join, trainer, developer stack) imports; nothing here starts services."""
