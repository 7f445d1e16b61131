// Seed: "Get the model's capabilities" (the JavaScript zone of the Mistral page).
// Unchanged except that the seed only awaits the call; the harness prints what came back.
import ModelClient from "@azure-rest/ai-inference";
import { isUnexpected } from "@azure-rest/ai-inference";
import { AzureKeyCredential } from "@azure/core-auth";

const client = new ModelClient(
    process.env.AZURE_INFERENCE_ENDPOINT, 
    new AzureKeyCredential(process.env.AZURE_INFERENCE_CREDENTIAL)
);

var response = await client.path("info").get()

// harness: what the seed shows as "The response is as follows"
if (isUnexpected(response)) {
    throw response.body.error;
}
console.log(JSON.stringify(response.body));
