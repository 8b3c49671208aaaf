"""One module per group of commands: argument handling and output, no engine logic."""
