"""Sans-I/O Signal protocol core: keys, XEdDSA, X3DH/PQXDH, the Double Ratchet, wire formats.

Nothing here touches a socket, a file or a database: bytes in, bytes (and new state) out.
"""
