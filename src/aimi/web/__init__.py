"""The portal: catalog, deployments, keys, usage and cost charts, and the chat playground, served by
`aimi serve` at `/` (pages under `/portal/`)."""
