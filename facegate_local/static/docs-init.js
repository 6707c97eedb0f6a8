// Swagger UI over the committed spec; "Authorize" takes the x-api-key for "Try it out".
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  persistAuthorization: false,
});
