"""``python -m gateway [daphne's options] chatproject.asgi:application`` (gateway.launch)."""
from gateway.launch import main

main()
