FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streamer ./streamer
COPY index ./index
RUN pip install --no-cache-dir .
USER nobody
ENTRYPOINT ["streamrec"]
CMD ["worker"]
