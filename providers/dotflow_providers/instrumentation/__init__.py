"""Optional observability backends; the core never imports them."""
