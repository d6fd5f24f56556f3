"""The voice package's pure rules: the call model (``calls``) and TwiML rendering (``twiml``)."""
