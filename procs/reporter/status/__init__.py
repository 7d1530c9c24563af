"""The reporter's status snapshot: gathering (collect), rendering (render) and serving (web)."""
