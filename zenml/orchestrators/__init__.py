"""Where steps run: in process, or in containers of their integration image."""
