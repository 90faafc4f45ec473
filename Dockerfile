FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streamer ./streamer
COPY index ./index
RUN pip install --no-cache-dir .
USER nobody
# numba caches the compiled SGD step here (site-packages is read-only for nobody)
ENV NUMBA_CACHE_DIR=/tmp/numba-cache
ENTRYPOINT ["streamrec"]
CMD ["worker"]
