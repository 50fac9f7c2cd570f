FROM python:3.12-slim

WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY notes ./notes
COPY migrations ./migrations
COPY docs ./docs
RUN pip install --no-cache-dir . && useradd --create-home notes
USER notes

ENV NOTES_HOST=0.0.0.0 \
    NOTES_PORT=8000
EXPOSE 8000
# `notes serve` waits for the database (NOTES_DATABASE_WAIT seconds), migrates, then serves.
CMD ["notes", "serve"]
