//! Reading a passphrase: from a key file (offset, size), from stdin, or from the terminal.
