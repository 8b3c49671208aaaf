"""The appliance's terminal interface: Textual screens and widgets over the engine in appliance/.

The engine never imports this package; everything here reaches the engine through
`tui.backend`. Run it with `appliance tui [--demo]` or `python3 -m tui [--demo]`.
"""
