// Swagger UI over this server's OpenAPI document (see templates/api_docs.html).
// No online validator: the page makes no request to a third party.
window.ui = SwaggerUIBundle({
  url: "/api/openapi.json",
  dom_id: "#swagger-ui",
  validatorUrl: null,
  deepLinking: true,
});
