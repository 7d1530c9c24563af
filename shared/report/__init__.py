"""The daily report, shared by the reporter and `slt report`: its figures (daily.py) and their
text / HTML rendering (render.py)."""
