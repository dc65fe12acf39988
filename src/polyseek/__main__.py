from polyseek.cli import app

app()
