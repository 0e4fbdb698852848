"""tlcore: the transfer-learning engine behind the studio. It knows nothing of Streamlit."""

__version__ = "0.1.0"
