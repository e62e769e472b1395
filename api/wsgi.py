"""Entry point for gunicorn: `gunicorn api.wsgi:app`.

The documented default secrets stop the start here unless FILTERVIZ_ALLOW_DEFAULT_SECRETS=1 (make up).
"""

from api.app import create_app
from shared.default_secrets import refuse_default_secrets

refuse_default_secrets("the API")
app = create_app()
