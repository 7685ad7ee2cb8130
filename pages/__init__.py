"""The app's pages: one thin file per step, run by app.py through st.navigation."""
