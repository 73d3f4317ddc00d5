"""Interactive use: the IPython magics, a notebook, the joblib backend."""
