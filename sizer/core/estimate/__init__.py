"""What a model needs and how fast it runs, before anything is loaded: memory (`memory`,
`experts` for mixture-of-experts), speed (`speed`), fit on a machine (`fit`), the way each
engine holds a model (`llamacpp`, `vllm`) and the one planning policy every caller uses
(`planning`)."""
