"""The render service: the carpet catalogue and render jobs paid through credit holds."""
