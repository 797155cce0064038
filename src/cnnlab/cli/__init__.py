"""The `cnnlab` command: argparse subcommands, each a thin function over the library."""
