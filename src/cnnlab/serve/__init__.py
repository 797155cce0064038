"""`cnnlab serve`: a web page and a JSON API that show a trained model at work.

app.py builds the Starlette application (`create_app`), server.py runs it under
uvicorn (on a socket bound first, so that port 0 picks a free port), session.py
holds the model and answers one request at a time, request_body.py and
image_bytes.py check and decode what a request sends, host_check.py refuses
foreign Host headers (DNS rebinding), payload.py turns tensors into JSON and
small PNGs, and static/ holds the page (plain HTML, CSS and JavaScript).
"""
