"""Reading configuration files: the site file (where state and mail live) and
declarative files (module settings, domains, records).  Every value is
checked and converted here, once; a mistake becomes one
:class:`rpopcore.errors.ConfigError` naming the file, the key and the fix."""
