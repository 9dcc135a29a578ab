from vmtest.machine.terminals import parse_vcs, parse_window_names


def vcs(rows, cols, lines):
    data = bytes([rows, cols, 0, 0])
    for r in range(rows):
        text = lines[r] if r < len(lines) else ""
        data += b"".join(ord(c).to_bytes(4, "little") for c in text.ljust(cols))
    return data


def test_vcs_rows_become_lines():
    assert parse_vcs(vcs(3, 10, ["login: x", "  a  b"])) == "login: x  \n  a  b    "
    assert parse_vcs(vcs(2, 5, ["12345", "€é"])) == "12345\n€é   "
    # NixOS keeps trailing spaces: a prompt waiting for input ends in one
    assert parse_vcs(vcs(2, 12, ["host login: "])).endswith("login: ")


def test_window_names_from_xwininfo():
    tree = """
xwininfo: Window id: 0x3ac (the root window) (has no name)

  Root window id: 0x3ac (the root window) (has no name)
  Parent window id: 0x0 (none)
     2 children:
     0x400001 "xterm": ("xterm" "XTerm")  499x316+0+0  +0+0
        1 child:
        0x40000e (has no name): ()  499x316+0+0  +0+0
     0x200001 "a \\"quoted\\" name": ()  10x10+0+0  +0+0
"""
    assert parse_window_names(tree) == ["xterm", 'a \\"quoted\\" name']
