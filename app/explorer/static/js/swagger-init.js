// Starts Swagger UI on /openapi.json (a file, not an inline script: the page's CSP allows no inline code).
window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true });
