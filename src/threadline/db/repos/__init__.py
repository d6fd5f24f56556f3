"""Every query lives here: one module per aggregate. Functions take the session first and never commit."""
