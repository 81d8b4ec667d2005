# The operator image the chart points at. Not built in CI here (this machine has no
# container engine); `make test` runs the same package from the virtual environment.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip install --no-cache-dir . && rm -rf /root/.cache
USER 65532:65532
ENTRYPOINT ["goodput"]
CMD ["run", "--all-namespaces"]
