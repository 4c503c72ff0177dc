"""The only code that knows API Gateway events: request parsing and error answers per protocol family."""
