"""Transfer-Learning Studio: the frame around the pages (``streamlit run app.py``).

Page config, the auth gate hook, navigation, the shared sidebar and session defaults. Pages
live in ``pages/``; engine logic in ``tlcore``; Streamlit glue in ``ui/``.

Until some session has run ``st.navigation``, Streamlit serves a ``pages/`` folder as an old-style
multipage app, so a cold deep link (``/train?run=...`` right after a server restart) would run a
page without this frame. Streamlit 1.67 has no setting to turn that discovery off (it checks for
``pages/`` beside this file; ``client.showSidebarNavigation`` only hides the menu). Each page
therefore starts with ``glue.require_frame()``, which sends such a visit here first;
:func:`ui.glue.restore_deep_link` then opens the page that was asked for. The proof is the
cold-link test in ``tests/e2e/test_studio_flow.py``.
"""

import streamlit as st

from ui import auth, glue, widgets

st.set_page_config(page_title="Transfer-Learning Studio", page_icon=":material/model_training:",
                   layout="wide")

auth.gate()  # before any page or sidebar renders; off unless TL_AUTH is set

glue.init_session()

train_page = st.Page(widgets.TRAIN_PAGE, title="Train", icon=":material/monitoring:")
pages = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page(widgets.CONFIGURE_PAGE, title="Configure", icon=":material/tune:"),
    train_page,
    st.Page(widgets.COMPARE_PAGE, title="Compare & Classify", icon=":material/compare:"),
]
page = st.navigation(pages)
glue.restore_deep_link(pages)
if glue.store_opens():  # else every page shows why the store is unusable, and what to do
    widgets.jobs_sidebar(train_page)
    glue.run_page(page)
