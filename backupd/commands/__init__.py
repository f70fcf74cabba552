"""Command-line parsing, one module per command group; each calls one action."""
