"""Transfer-Learning Studio: the frame around the pages (``streamlit run app.py``).

Page config, navigation, the auth gate hook, the shared sidebar and session defaults. Pages
live in ``pages/``; engine logic in ``tlcore``; Streamlit glue in ``ui/``.

Until some session has run ``st.navigation``, Streamlit serves a ``pages/`` folder as an old-style
multipage app: the first script run after a server start sends a menu of the raw file names
(app, compare, configure, home, train) before it runs this file. Streamlit 1.67 has no setting to
turn that discovery off (it checks for ``pages/`` beside this file); ``client.showSidebarNavigation
= false`` would hide the raw menu, but it hides the ``st.navigation`` menu too. So:

- the first paint: ``st.navigation`` runs first, before anything imports TensorFlow (the ``ui``
  modules take seconds to import on a fresh server), so its menu replaces the raw one at once,
  before the browser draws it; ``tests/e2e/test_first_paint.py`` watches for the raw names;
- a cold deep link (``/train?run=...`` right after a restart) would run a page without this
  frame: each page starts with ``glue.require_frame()``, which sends such a visit here first, and
  :func:`ui.glue.restore_deep_link` then opens the page that was asked for (the cold-link test in
  ``tests/e2e/test_studio_flow.py``).

The menu is drawn before the sign-in gate, which only shows page titles; no page runs until the
gate has let the visitor in.
"""

import streamlit as st

st.set_page_config(page_title="Transfer-Learning Studio", page_icon=":material/model_training:",
                   layout="wide")

train_page = st.Page("pages/train.py", title="Train", icon=":material/monitoring:")
pages = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/collect.py", title="Collect", icon=":material/add_a_photo:"),
    st.Page("pages/configure.py", title="Configure", icon=":material/tune:"),
    train_page,
    st.Page("pages/compare.py", title="Compare & Classify", icon=":material/compare:"),
]
page = st.navigation(pages)  # first: see "the first paint" above

with st.spinner("Starting the studio…"):  # shown only if it takes long: the first visit after a start
    from ui import auth, glue, widgets

auth.gate()  # before any page or sidebar renders; off unless TL_AUTH is set

glue.init_session()
glue.restore_deep_link(pages)
if glue.store_opens():  # else every page shows why the store is unusable, and what to do
    widgets.jobs_sidebar(train_page)
    glue.run_page(page)
