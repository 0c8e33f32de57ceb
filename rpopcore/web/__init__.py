"""The web interface: WebAdmin and WebUser pages and the JSON API under
them, an ASGI application (Starlette, Jinja2) served by ``rpop run`` when
the site file has a ``[web]`` table, or alone by ``rpop web``.

- :mod:`rpopcore.web.operations` -- what the pages and the API do, with
  roles, through the same checks and apply as ``rpop apply``;
- :mod:`rpopcore.web.auth` -- sign-in through the
  ``rpop_web_authenticators`` hook, sessions, the failure limit;
- :mod:`rpopcore.web.api`, :mod:`rpopcore.web.pages` -- the two front ends;
- :mod:`rpopcore.web.app` -- the application and its guards (headers,
  body limit); :mod:`rpopcore.web.server` -- serving it.
"""
