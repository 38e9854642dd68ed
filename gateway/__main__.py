"""``python -m gateway [daphne's options] chatproject.asgi:application`` (gateway.server)."""
from gateway.server import main

main()
